"""Tensor-name tables taken from gguf-py instead of being typed out per architecture.

gguf-py's `TensorNameMap` knows, for 150+ architectures, which Hugging Face names map to
which GGUF tensor, but only as a flat map for a fixed block count. The converter wants
templates (`model.layers.{bid}.self_attn.q_proj` -> `blk.{bid}.attn_q`), so the same
tables are read here with `{bid}` left in place. Precedence is gguf-py's: among the
tensors an architecture has, a name listed under two of them goes to the later one.

A few architectures the bundled llama.cpp runs are newer than the gguf-py release on
PyPI (0.19.0): for those, NEWER_ARCHS says which of gguf-py's tensor kinds they have (as
the gguf-py vendored with llama.cpp lists them) and the names come from the same tables.
"""

from __future__ import annotations

import functools

import gguf
from gguf.tensor_mapping import TensorNameMap

#: GGUF architecture -> its MODEL_TENSOR kinds, for architectures gguf-py has no entry for
NEWER_ARCHS: dict[str, tuple[str, ...]] = {
    "laguna": (
        *("TOKEN_EMBD", "OUTPUT_NORM", "OUTPUT", "ATTN_NORM", "ATTN_Q", "ATTN_K", "ATTN_V"),
        *("ATTN_OUT", "ATTN_Q_NORM", "ATTN_K_NORM", "ATTN_GATE", "FFN_NORM", "FFN_GATE"),
        *("FFN_DOWN", "FFN_UP", "FFN_GATE_INP", "FFN_EXP_PROBS_B", "FFN_GATE_EXP"),
        *("FFN_DOWN_EXP", "FFN_UP_EXP", "FFN_GATE_SHEXP", "FFN_UP_SHEXP", "FFN_DOWN_SHEXP"),
    ),
}


def model_arch(gguf_arch: str) -> gguf.MODEL_ARCH:
    """gguf-py's enum member for a GGUF architecture name ("llama", "qwen3moe", ...)."""
    for arch, name in gguf.MODEL_ARCH_NAMES.items():
        if name == gguf_arch:
            return arch
    raise KeyError(gguf_arch)


@functools.cache
def tensor_table(gguf_arch: str) -> dict[str, str]:
    """HF name stem (no .weight/.bias, `{bid}` for the block) -> GGUF name stem."""
    newer = NEWER_ARCHS.get(gguf_arch)
    arch = None if newer else model_arch(gguf_arch)
    if newer:
        allowed = {gguf.MODEL_TENSOR[kind] for kind in newer}
    else:
        allowed = set(gguf.MODEL_TENSORS[model_arch(gguf_arch)])
    table: dict[str, str] = {}
    for tensor, keys in TensorNameMap.mappings_cfg.items():
        if tensor in allowed:
            for key in keys:
                table[key] = gguf.TENSOR_NAMES[tensor]
    block_cfg = {
        **TensorNameMap.block_mappings_cfg,
        **(TensorNameMap.arch_block_mappings_cfg.get(arch, {}) if arch else {}),
    }
    for tensor, keys in block_cfg.items():
        if tensor in allowed:
            for key in keys:
                table[key] = gguf.TENSOR_NAMES[tensor]
    return table
