"""Llama4ForConditionalGeneration's language model -> GGUF "llama4" (vision tower left out).

Llama 4 rotates adjacent pairs (no Q/K permutation), L2-normalizes Q and K in its RoPE
layers, leaves RoPE out of every 4th layer and attends in 8192-token chunks; llama.cpp
fixes those settings itself. MoE layers (every `interleave_moe_layer_step`-th) have a
sigmoid router, fused experts (see fused_experts) and a shared expert; the others are
dense with the wider `intermediate_size_mlp`, which llama.cpp calls the feed-forward
length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolchain.convert.arch import decoder
from toolchain.convert.arch.dense import write_llama
from toolchain.convert.arch.fused_experts import FUSED_RENAMES, fused_expert_splits
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The (lifted) text_config with the dense and expert widths under their usual keys."""
    view = dict(config)
    if "intermediate_size_mlp" in view:
        view["moe_intermediate_size"] = view["intermediate_size"]
        view["intermediate_size"] = view["intermediate_size_mlp"]
    return view


def _metadata(h: HParams, md: Metadata) -> None:
    write_llama(h, md)
    md.u32("{arch}.interleave_moe_layer_step", h.int("interleave_moe_layer_step"))
    md.u32("{arch}.expert_feed_forward_length", h.int("moe_intermediate_size"))
    kinds = h.get("layer_types", default=None)
    if isinstance(kinds, list) and all(k == "full_attention" for k in kinds):
        md.u32("{arch}.attention.sliding_window", 0)  # no chunking (MobileLLM-style)


ARCH = text_arch(
    ("Llama4ForConditionalGeneration",),
    "llama4",
    family="Llama 4 (text)",
    metadata=_metadata,
    vocab=("bpe",),
    uniform_blocks=False,
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    renames=FUSED_RENAMES,
    names={"model.layers.{bid}.feed_forward.experts.gate_up_proj": "blk.{bid}.ffn_gate_up_exps"},
    splits=fused_expert_splits("moe_intermediate_size"),
    extra_tensors=decoder.llama3_rope_factors,
    text_part=True,
    config_view=_text_config,
)
