"""Tensor-name tables taken from gguf-py instead of being typed out per architecture.

gguf-py's `TensorNameMap` knows, for 150+ architectures, which Hugging Face names map to
which GGUF tensor, but only as a flat map for a fixed block count. The converter wants
templates (`model.layers.{bid}.self_attn.q_proj` -> `blk.{bid}.attn_q`), so the same
tables are read here with `{bid}` left in place. Precedence is gguf-py's: among the
tensors an architecture has, a name listed under two of them goes to the later one.
"""

from __future__ import annotations

import functools

import gguf
from gguf.tensor_mapping import TensorNameMap


def model_arch(gguf_arch: str) -> gguf.MODEL_ARCH:
    """gguf-py's enum member for a GGUF architecture name ("llama", "qwen3moe", ...)."""
    for arch, name in gguf.MODEL_ARCH_NAMES.items():
        if name == gguf_arch:
            return arch
    raise KeyError(gguf_arch)


@functools.cache
def tensor_table(gguf_arch: str) -> dict[str, str]:
    """HF name stem (no .weight/.bias, `{bid}` for the block) -> GGUF name stem."""
    arch = model_arch(gguf_arch)
    allowed = set(gguf.MODEL_TENSORS[arch])
    table: dict[str, str] = {}
    for tensor, keys in TensorNameMap.mappings_cfg.items():
        if tensor in allowed:
            for key in keys:
                table[key] = gguf.TENSOR_NAMES[tensor]
    block_cfg = {
        **TensorNameMap.block_mappings_cfg,
        **TensorNameMap.arch_block_mappings_cfg.get(arch, {}),
    }
    for tensor, keys in block_cfg.items():
        if tensor in allowed:
            for key in keys:
                table[key] = gguf.TENSOR_NAMES[tensor]
    return table
