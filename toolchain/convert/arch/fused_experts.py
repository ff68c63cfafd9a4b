"""Experts stored fused across experts (Qwen3-VL MoE, Llama 4): `experts.gate_up_proj`
and `experts.down_proj`, one tensor each per layer, written as llama.cpp's
`ffn_{gate,up,down}_exps` [experts, out, in].

Released checkpoints hold them as [experts, in, out] (gate_up: [experts, embd, 2*ff],
gate then up along the last axis), which is transposed; transformers 5 saves its own
[experts, out, in] (gate_up: [experts, 2*ff, embd]), which is only cut. The layout is
told by the shape; a square one by who saved it (config.json's transformers_version).
"""

from __future__ import annotations

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.architecture import HParams, Split
from toolchain.convert.errors import ConvertError

_EXPERTS = "blk.{bid}.ffn_{}_exps.weight"


def fused_expert_splits(ff_key: str) -> dict[str, tuple[Split, ...]]:
    """The splits for `ffn_gate_up_exps` / `ffn_down_exps`, the expert width read from
    config key `ff_key`. The entry maps `experts.gate_up_proj` to ffn_gate_up_exps."""

    def ff(h: HParams) -> int:
        return h.int(ff_key)

    def gate_up_hub(shape: tuple[int, ...], h: HParams) -> bool:
        embd, ff2 = decoder.n_embd(h), 2 * ff(h)
        return _hub_layout(shape, h, (embd, ff2), (ff2, embd))

    def down_hub(shape: tuple[int, ...], h: HParams) -> bool:
        embd = decoder.n_embd(h)
        return _hub_layout(shape, h, (ff(h), embd), (embd, ff(h)))

    def half(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
        gate_up_hub(shape, h)  # raises for a shape that fits neither layout
        return (shape[0], ff(h), decoder.n_embd(h))

    def gate(w: np.ndarray, h: HParams) -> np.ndarray:
        full = _out_in(w, gate_up_hub(w.shape, h))
        return np.ascontiguousarray(full[:, : full.shape[1] // 2])

    def up(w: np.ndarray, h: HParams) -> np.ndarray:
        full = _out_in(w, gate_up_hub(w.shape, h))
        return np.ascontiguousarray(full[:, full.shape[1] // 2 :])

    def down_shape(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
        down_hub(shape, h)
        return (shape[0], decoder.n_embd(h), ff(h))

    def down(w: np.ndarray, h: HParams) -> np.ndarray:
        return _out_in(w, down_hub(w.shape, h))

    return {
        "blk.{bid}.ffn_gate_up_exps.weight": (
            Split(_EXPERTS.replace("{}", "gate"), half, gate),
            Split(_EXPERTS.replace("{}", "up"), half, up),
        ),
        "blk.{bid}.ffn_down_exps.weight": (
            Split(_EXPERTS.replace("{}", "down"), down_shape, down),
        ),
    }


def _hub_layout(
    shape: tuple[int, ...], h: HParams, hub: tuple[int, int], internal: tuple[int, int]
) -> bool:
    """Whether fused experts are [experts, in, out] (released) rather than
    [experts, out, in] (transformers 5), by shape, else by who saved them."""
    if shape[1:] == hub and shape[1:] != internal:
        return True
    if shape[1:] == internal and shape[1:] != hub:
        return False
    if shape[1:] == hub:
        return not str(h.get("transformers_version", default="")).startswith("5.")
    raise ConvertError(
        h.path,
        f"fused experts of shape {list(shape)} fit neither "
        f"[experts, {hub[0]}, {hub[1]}] nor [experts, {internal[0]}, "
        f"{internal[1]}]",
        hint="config.json does not describe these weights",
    )


def _out_in(w: np.ndarray, hub: bool) -> np.ndarray:
    return np.ascontiguousarray(w.swapaxes(-1, -2) if hub else w)


#: the checkpoint's fused expert tensors carry no .weight suffix
FUSED_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.experts\.(gate_up_proj|down_proj)$", r".experts.\1.weight"),
)
