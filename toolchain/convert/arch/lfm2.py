"""Lfm2ForCausalLM -> "lfm2": a hybrid of gated short-convolution blocks and attention
blocks (config.json's layer_types says which is which).

Key-value heads are written per layer (0 for convolution blocks), the feed-forward width
is the adjusted one the checkpoint actually has, and the depthwise convolution weight
[channels, 1, L] is stored as [channels, L] (same bytes, one axis fewer).
"""

from __future__ import annotations

import gguf

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
    md.i32s(
        "{arch}.attention.head_count_kv",
        [0 if kind == "conv" else decoder.n_head_kv(h) for kind in kinds],
    )
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.shortconv.l_cache", h.int("conv_L_cache"))
    md.u32("{arch}.feed_forward_length", feed_forward_length(h))


ARCH = text_arch(
    ("Lfm2ForCausalLM",),
    "lfm2",
    family="LFM2",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    uniform_blocks=False,
    reshapes={"blk.{bid}.shortconv.conv.weight": lambda s: (s[0], s[-1])},
)


def _moe_metadata(h: HParams, md: Metadata) -> None:
    """LFM2-MoE: LFM2's blocks, the first num_dense_layers with a dense feed-forward, the
    rest with sigmoid-routed experts (a per-expert selection bias)."""
    decoder.write_common(h, md)
    kinds = h.get("layer_types")
    md.i32s(
        "{arch}.attention.head_count_kv",
        [0 if kind == "conv" else decoder.n_head_kv(h) for kind in kinds],
    )
    md.u32("{arch}.expert_feed_forward_length", h.int("moe_intermediate_size"))
    md.u32("{arch}.leading_dense_block_count", h.int("num_dense_layers"))
    md.u32("{arch}.expert_gating_func", int(gguf.ExpertGatingFuncType.SIGMOID))
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.shortconv.l_cache", h.int("conv_L_cache"))


MOE = text_arch(
    ("Lfm2MoeForCausalLM",),
    "lfm2moe",
    family="LFM2 MoE",
    metadata=_moe_metadata,
    vocab=("bpe",),
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    uniform_blocks=False,
    names={
        f"model.layers.{{bid}}.feed_forward.experts.{w}": f"blk.{{bid}}.ffn_{kind}_exps"
        for w, kind in (("w1", "gate"), ("w2", "down"), ("w3", "up"))
    },
    renames=((r"\.expert_bias$", ".expert_bias.bias"),),
    reshapes={"blk.{bid}.shortconv.conv.weight": lambda s: (s[0], s[-1])},
)


#: LFM2-VL's language model (its SigLIP2 tower and projector left out)
VLM = text_arch(
    ("Lfm2VlForConditionalGeneration",),
    "lfm2",
    family="LFM2-VL (text)",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k},
    uniform_blocks=False,
    text_part=True,
    reshapes={"blk.{bid}.shortconv.conv.weight": lambda s: (s[0], s[-1])},
)
