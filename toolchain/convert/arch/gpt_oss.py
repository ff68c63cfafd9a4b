"""GptOssForCausalLM -> "gpt-oss": attention sinks, alternating sliding window, YaRN, and
experts stored fused across experts.

transformers keeps the experts as [experts, in, out] with gate and up interleaved
column by column in gate_up_proj; llama.cpp wants [experts, out, in] per projection,
so gate_up is transposed and cut into its even (gate) and odd (up) rows, down is
transposed, and the fused biases are cut the same way. The released checkpoints hold
the experts as MXFP4 blocks ([experts, out, ...], already llama.cpp's orientation):
those are kept MXFP4 (see mxfp4.py), gate_up cut into even and odd rows likewise.
"""

from __future__ import annotations

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Split
from toolchain.convert.metadata import Metadata


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    md.u32("{arch}.attention.sliding_window", h.int("sliding_window"))
    md.u32("{arch}.expert_feed_forward_length", h.int("intermediate_size"))


def _transposed(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.swapaxes(-1, -2))


def _swap_last(shape: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
    return (*shape[:-2], shape[-1], shape[-2])


def _half_rows(shape: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
    return (shape[0], shape[2] // 2, shape[1])


def _half_last(shape: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
    return (*shape[:-1], shape[-1] // 2)


def _even(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w[..., ::2])


def _odd(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w[..., 1::2])


def _exps(kind: str) -> str:
    return "blk.{bid}.ffn_" + kind + "_exps"


ARCH = text_arch(
    ("GptOssForCausalLM",),
    "gpt-oss",
    family="GPT-OSS",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    renames=(
        (r"\.(gate_up_proj|down_proj)$", r".\1.weight"),
        (r"\.(gate_up_proj|down_proj)_bias$", r".\1.bias"),
        (r"\.sinks$", ".sinks.weight"),
    ),
    names={"model.layers.{bid}.mlp.experts.gate_up_proj": "blk.{bid}.ffn_gate_up_exps"},
    mxfp4_rows={
        "blk.{bid}.ffn_gate_up_exps.weight": (
            (_exps("gate") + ".weight", slice(0, None, 2)),
            (_exps("up") + ".weight", slice(1, None, 2)),
        ),
        "blk.{bid}.ffn_down_exps.weight": ((_exps("down") + ".weight", slice(None)),),
    },
    splits={
        "blk.{bid}.ffn_gate_up_exps.weight": (
            Split(_exps("gate") + ".weight", _half_rows, lambda w, _h: _transposed(_even(w))),
            Split(_exps("up") + ".weight", _half_rows, lambda w, _h: _transposed(_odd(w))),
        ),
        "blk.{bid}.ffn_gate_up_exps.bias": (
            Split(_exps("gate") + ".bias", _half_last, lambda b, _h: _even(b)),
            Split(_exps("up") + ".bias", _half_last, lambda b, _h: _odd(b)),
        ),
        "blk.{bid}.ffn_down_exps.weight": (
            Split(_exps("down") + ".weight", _swap_last, lambda w, _h: _transposed(w)),
        ),
    },
)
