"""The language models of Qwen's vision-language checkpoints (vision tower left out):

- Qwen3VLForConditionalGeneration -> "qwen3vl": Qwen3 with interleaved multimodal RoPE
  (its rotary dimensions split into (time, height, width) sections, `mrope_section`)
  and the number of vision layers whose features are stacked into the first blocks
  (deepstack; llama.cpp sizes its image embeddings by it).
- Qwen3VLMoeForConditionalGeneration -> "qwen3vlmoe": the same on Qwen3-MoE, whose
  experts are stored fused (see fused_experts).

Text-only input gives all three position sections the same value, so these run text as
their text-only siblings do. (Qwen2-VL and Qwen2.5-VL, with their projectors: vision.py.)
"""

from __future__ import annotations

from collections.abc import Callable

from toolchain.convert.arch import decoder
from toolchain.convert.arch.fused_experts import FUSED_RENAMES, fused_expert_splits
from toolchain.convert.arch.moe import write_qwen_moe
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def write_sections(h: HParams, md: Metadata) -> None:
    """rope.dimension_sections: mrope_section padded to llama.cpp's four."""
    sections = list(decoder.rope_parameters(h).get("mrope_section") or [])
    if sections:
        md.i32s("{arch}.rope.dimension_sections", [int(s) for s in (sections + [0] * 4)[:4]])


def _write_deepstack(h: HParams, md: Metadata) -> None:
    vision = h.get("vision_config", default={})
    layers = vision.get("deepstack_visual_indexes", []) if isinstance(vision, dict) else []
    md.u32("{arch}.n_deepstack_layers", len(layers))


def _with(*writers: Callable[[HParams, Metadata], None]) -> Callable[[HParams, Metadata], None]:
    def write(h: HParams, md: Metadata) -> None:
        for writer in writers:
            writer(h, md)

    return write


_ATTENTION = {k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k}

QWEN3VL = text_arch(
    ("Qwen3VLForConditionalGeneration",),
    "qwen3vl",
    family="Qwen3-VL (text)",
    vocab=("bpe",),
    shapes={},
    metadata=_with(decoder.write_common, write_sections, _write_deepstack),
    text_part=True,
)
QWEN3VLMOE = text_arch(
    ("Qwen3VLMoeForConditionalGeneration",),
    "qwen3vlmoe",
    family="Qwen3-VL MoE (text)",
    vocab=("bpe",),
    shapes=_ATTENTION,
    metadata=_with(write_qwen_moe, write_sections, _write_deepstack),
    renames=FUSED_RENAMES,
    names={"model.layers.{bid}.mlp.experts.gate_up_proj": "blk.{bid}.ffn_gate_up_exps"},
    splits=fused_expert_splits("moe_intermediate_size"),
    text_part=True,
)
