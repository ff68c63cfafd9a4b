"""Qwen2ForCausalLM -> GGUF "qwen2": Llama's layout plus Q/K/V biases, NEOX RoPE (no permute)."""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.architecture import Architecture

ARCH = Architecture(
    family="Qwen2",
    hf_names=("Qwen2ForCausalLM",),
    gguf_arch="qwen2",
    tensors=decoder.TENSORS,
    skip=decoder.SKIP,
    shapes=decoder.SHAPES,
    metadata=decoder.write_common,
    vocab=("spm", "bpe"),
)
