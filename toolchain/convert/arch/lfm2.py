"""Lfm2ForCausalLM -> "lfm2": a hybrid of gated short-convolution blocks and attention
blocks (config.json's layer_types says which is which).

Key-value heads are written per layer (0 for convolution blocks), the feed-forward width
is the adjusted one the checkpoint actually has, and the depthwise convolution weight
[channels, 1, L] is stored as [channels, L] (same bytes, one axis fewer).
"""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def feed_forward_length(h: HParams) -> int:
    """LFM2's SwiGLU width: 2/3 of block_ff_dim, scaled, rounded up to block_multiple_of."""
    ff = h.int("block_ff_dim", "intermediate_size")
    if h.get("block_auto_adjust_ff_dim", default=False):
        ff = int(2 * ff / 3)
        multiplier = h.get("block_ffn_dim_multiplier", default=None)
        if multiplier is not None:
            ff = int(float(multiplier) * ff)
        step = h.int("block_multiple_of")
        ff = step * ((ff + step - 1) // step)
    return ff


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    kinds = h.get("layer_types")
    md.i32s("{arch}.attention.head_count_kv",
            [0 if kind == "conv" else decoder.n_head_kv(h) for kind in kinds])
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.shortconv.l_cache", h.int("conv_L_cache"))
    md.u32("{arch}.feed_forward_length", feed_forward_length(h))


ARCH = text_arch(
    ("Lfm2ForCausalLM",), "lfm2", family="LFM2", metadata=_metadata, vocab=("bpe",),
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    uniform_blocks=False,
    reshapes={"blk.{bid}.shortconv.conv.weight": lambda s: (s[0], s[-1])},
)
