"""LagunaForCausalLM (poolside) -> GGUF "laguna".

A sigmoid-routed MoE decoder (correction bias, one always-on shared expert, routed
scale, leading dense blocks) whose attention has Q/K norms, a softplus output gate
(`g_proj`: one value per head or per channel, llama.cpp tells which by its width), a
head count per layer, and RoPE per layer kind: partial rotary on full-attention layers,
its own theta and rotary width on sliding-window ones.

llama.cpp assumes the sliding-window layout of the released models (layer 0 and every
4th after it full); a config.json whose layer_types say otherwise gets the per-layer
pattern written out. What llama.cpp cannot run is refused by name (see _checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gguf

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def _kinds(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key)
    return [str(k) for k in value] if isinstance(value, list) else []


def _checked(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """config.json, refused where the transformers model and llama.cpp's would differ."""
    mlp = _kinds(config, "mlp_layer_types")
    dense = mlp.index("sparse") if "sparse" in mlp else len(mlp)
    if any(kind != "sparse" for kind in mlp[dense:]):
        raise ValueError(
            f"mlp_layer_types = {mlp!r}: llama.cpp's laguna has dense blocks only "
            "before the first sparse one"
        )
    if float(config.get("moe_router_logit_softcapping") or 0.0) > 0.0:
        raise ValueError(
            "moe_router_logit_softcapping = "
            f"{config['moe_router_logit_softcapping']!r}: llama.cpp's laguna has no "
            "router soft-capping"
        )
    if config.get("moe_apply_router_weight_on_input"):
        raise ValueError(
            "moe_apply_router_weight_on_input = True: llama.cpp's laguna weights the "
            "experts' outputs"
        )
    sliding = _rope(config, "sliding_attention")
    if str(sliding.get("rope_type", "default")) != "default":
        raise ValueError(
            f"sliding_attention rope_type {sliding['rope_type']!r}: llama.cpp runs "
            "Laguna's sliding-window layers with plain RoPE"
        )
    return config


def _rope(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    params = config.get("rope_parameters")
    value = params.get(kind) if isinstance(params, dict) else None
    return value if isinstance(value, dict) else {}


def _rotary(h: HParams, params: Mapping[str, Any]) -> int:
    return int(decoder.head_dim(h) * float(params.get("partial_rotary_factor", 1.0)))


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    n_layer = h.int("num_hidden_layers")
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    heads = h.get("num_attention_heads_per_layer", default=None) or [decoder.n_head(h)] * n_layer
    md.i32s("{arch}.attention.head_count", [int(n) for n in heads])
    window = h.int("sliding_window", default=0)
    if window > 0:
        md.u32("{arch}.attention.sliding_window", window)
        # transformers runs every layer full when config.json has no layer_types
        kinds = _kinds(h.config, "layer_types") or ["full_attention"] * n_layer
        pattern = [kind == "sliding_attention" for kind in kinds]
        if pattern != [i % 4 != 0 for i in range(n_layer)]:
            md.bools("{arch}.attention.sliding_window_pattern", pattern)
    md.u32("{arch}.expert_feed_forward_length", h.int("moe_intermediate_size"))
    md.u32("{arch}.expert_shared_feed_forward_length", h.int("shared_expert_intermediate_size"))
    md.boolean("{arch}.expert_weights_norm", True)  # transformers always renormalizes top-k
    md.f32("{arch}.expert_weights_scale", h.float("moe_routed_scaling_factor", default=1.0))
    md.u32("{arch}.expert_gating_func", int(gguf.ExpertGatingFuncType.SIGMOID))
    mlp = _kinds(h.config, "mlp_layer_types") or ["dense"] + ["sparse"] * (n_layer - 1)
    md.u32("{arch}.leading_dense_block_count", mlp.index("sparse") if "sparse" in mlp else n_layer)
    md.u32("{arch}.rope.dimension_count", _rotary(h, decoder.rope_parameters(h)))
    sliding = _rope(h.config, "sliding_attention")
    if sliding:
        md.f32("{arch}.rope.freq_base_swa", float(sliding.get("rope_theta", 10000.0)))
        md.u32("{arch}.rope.dimension_count_swa", _rotary(h, sliding))


#: the per-layer head count leaves Q and the output projection unchecked here
_SHAPES = {
    k: v
    for k, v in decoder.SHAPES.items()
    if "ffn_" not in k and "attn_q." not in k and "attn_output" not in k
}

ARCH = text_arch(
    ("LagunaForCausalLM",),
    "laguna",
    family="Laguna",
    metadata=_metadata,
    vocab=("bpe",),
    shapes=_SHAPES,
    # transformers saves the correction bias under the experts (as released checkpoints do)
    names={"model.layers.{bid}.mlp.experts.e_score_correction": "blk.{bid}.exp_probs_b"},
    uniform_blocks=False,
    special_tokens={"eot": "</assistant>"},
    control_tokens=("</assistant>",),
    config_view=_checked,
)
