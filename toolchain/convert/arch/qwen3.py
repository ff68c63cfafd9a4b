"""Qwen3ForCausalLM -> GGUF "qwen3": Qwen2's layout with per-head RMS norms on Q and K."""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.architecture import Architecture

ARCH = Architecture(
    family="Qwen3",
    hf_names=("Qwen3ForCausalLM",),
    gguf_arch="qwen3",
    tensors={
        **decoder.TENSORS,
        "model.layers.{bid}.self_attn.q_norm": "blk.{bid}.attn_q_norm",
        "model.layers.{bid}.self_attn.k_norm": "blk.{bid}.attn_k_norm",
    },
    skip=decoder.SKIP,
    shapes={
        **decoder.SHAPES,
        "blk.{bid}.attn_q_norm.weight": lambda h: (decoder.head_dim(h),),
        "blk.{bid}.attn_k_norm.weight": lambda h: (decoder.head_dim(h),),
    },
    metadata=decoder.write_common,
    vocab=("bpe",),
)
