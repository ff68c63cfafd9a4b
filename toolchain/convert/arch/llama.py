"""LlamaForCausalLM (Llama 2/3, SmolLM) and MistralForCausalLM -> GGUF "llama".

llama.cpp rotates Llama's Q/K with the "normal" (adjacent pairs) RoPE while transformers
rotates halves, so the rows of Q and K are permuted per head.
"""

from __future__ import annotations

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.architecture import Architecture, HParams
from toolchain.convert.metadata import Metadata


def _permute_q(w: np.ndarray, h: HParams) -> np.ndarray:
    return decoder.permute_rows(w, decoder.n_head(h))


def _permute_k(w: np.ndarray, h: HParams) -> np.ndarray:
    return decoder.permute_rows(w, decoder.n_head_kv(h))


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.rope.dimension_count", decoder.head_dim(h))


ARCH = Architecture(
    family="Llama / Mistral",
    hf_names=("LlamaForCausalLM", "MistralForCausalLM"),
    gguf_arch="llama",
    tensors=decoder.TENSORS,
    skip=decoder.SKIP,
    shapes=decoder.SHAPES,
    transforms={
        "blk.{bid}.attn_q.weight": _permute_q,
        "blk.{bid}.attn_q.bias": _permute_q,
        "blk.{bid}.attn_k.weight": _permute_k,
        "blk.{bid}.attn_k.bias": _permute_k,
    },
    metadata=_metadata,
    extra_tensors=decoder.llama3_rope_factors,
    vocab=("spm", "bpe"),
)
