"""The language models of Qwen's vision-language checkpoints (vision tower left out):

- Qwen2_5_VLForConditionalGeneration -> "qwen2vl": Qwen2 with multimodal RoPE, its
  rotary dimensions split into (time, height, width) sections (`mrope_section`).
- Qwen3VLForConditionalGeneration -> "qwen3vl": Qwen3 with interleaved multimodal RoPE
  and the number of vision layers whose features are stacked into the first blocks
  (deepstack; llama.cpp sizes its image embeddings by it).
- Qwen3VLMoeForConditionalGeneration -> "qwen3vlmoe": the same on Qwen3-MoE, whose
  experts are stored fused: gate_up_proj cut into its gate and up halves, each
  projection as llama.cpp's [experts, out, in]. Released checkpoints hold them as
  [experts, in, out] (transposed here); transformers 5 saves [experts, out, in].

Text-only input gives all three position sections the same value, so these run text as
their text-only siblings do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.moe import write_qwen_moe
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Split
from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata


def _write_sections(h: HParams, md: Metadata) -> None:
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


def _hub_layout(shape: tuple[int, ...], h: HParams, hub: tuple[int, int],
                internal: tuple[int, int]) -> bool:
    """Whether fused experts are in the released checkpoints' layout ([experts, in, out])
    rather than the one transformers 5 saves ([experts, out, in]), told by their shape;
    a square one by who saved it (config.json's transformers_version)."""
    if shape[1:] == hub and shape[1:] != internal:
        return True
    if shape[1:] == internal and shape[1:] != hub:
        return False
    if shape[1:] == hub:
        return not str(h.get("transformers_version", default="")).startswith("5.")
    raise ConvertError(h.path, f"fused experts of shape {list(shape)} fit neither "
                       f"[experts, {hub[0]}, {hub[1]}] nor [experts, {internal[0]}, "
                       f"{internal[1]}]", hint="config.json does not describe these weights")


def _gate_up_hub(shape: tuple[int, ...], h: HParams) -> bool:
    embd, ff2 = decoder.n_embd(h), 2 * h.int("moe_intermediate_size")
    return _hub_layout(shape, h, (embd, ff2), (ff2, embd))


def _down_hub(shape: tuple[int, ...], h: HParams) -> bool:
    embd, ff = decoder.n_embd(h), h.int("moe_intermediate_size")
    return _hub_layout(shape, h, (ff, embd), (embd, ff))


def _out_in(w: np.ndarray, hub: bool) -> np.ndarray:
    return np.ascontiguousarray(w.swapaxes(-1, -2) if hub else w)


def _half(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
    """Either layout of gate_up -> the [experts, ff, embd] of one half."""
    return (shape[0], h.int("moe_intermediate_size"), decoder.n_embd(h))


def _gate(w: np.ndarray, h: HParams) -> np.ndarray:
    full = _out_in(w, _gate_up_hub(w.shape, h))
    return np.ascontiguousarray(full[:, : full.shape[1] // 2])


def _up(w: np.ndarray, h: HParams) -> np.ndarray:
    full = _out_in(w, _gate_up_hub(w.shape, h))
    return np.ascontiguousarray(full[:, full.shape[1] // 2 :])


def _down_shape(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
    _down_hub(shape, h)  # raises for a shape that fits neither layout
    return (shape[0], decoder.n_embd(h), h.int("moe_intermediate_size"))


def _down(w: np.ndarray, h: HParams) -> np.ndarray:
    return _out_in(w, _down_hub(w.shape, h))


_EXPERTS = "blk.{bid}.ffn_{}_exps.weight"
#: fused experts -> per-projection stacks (see the module docstring)
_FUSED_EXPERTS = {
    "blk.{bid}.ffn_gate_up_exps.weight": (
        Split(_EXPERTS.replace("{}", "gate"), _half, _gate),
        Split(_EXPERTS.replace("{}", "up"), _half, _up)),
    "blk.{bid}.ffn_down_exps.weight": (
        Split(_EXPERTS.replace("{}", "down"), _down_shape, _down),),
}
_ATTENTION = {k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k}

QWEN25VL = text_arch(("Qwen2_5_VLForConditionalGeneration",), "qwen2vl",
                     family="Qwen2.5-VL (text)", vocab=("bpe",),
                     metadata=_with(decoder.write_common, _write_sections), text_part=True)
QWEN3VL = text_arch(("Qwen3VLForConditionalGeneration",), "qwen3vl", family="Qwen3-VL (text)",
                    vocab=("bpe",), shapes={},
                    metadata=_with(decoder.write_common, _write_sections, _write_deepstack),
                    text_part=True)
QWEN3VLMOE = text_arch(
    ("Qwen3VLMoeForConditionalGeneration",), "qwen3vlmoe", family="Qwen3-VL MoE (text)",
    vocab=("bpe",), shapes=_ATTENTION,
    metadata=_with(write_qwen_moe, _write_sections, _write_deepstack),
    renames=((r"\.experts\.(gate_up_proj|down_proj)$", r".experts.\1.weight"),),
    names={"model.layers.{bid}.mlp.experts.gate_up_proj": "blk.{bid}.ffn_gate_up_exps"},
    splits=_FUSED_EXPERTS, text_part=True)
