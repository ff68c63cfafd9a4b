"""Hugging Face safetensors -> GGUF conversion (models and PEFT LoRA adapters).

Entry points other passes call:

- `convert_hf_dir(src_dir, out_path, outtype="f16", progress=None) -> ConvertResult`
- `convert_lora(adapter_dir, out_path, base, outtype="f16", progress=None) -> ConvertResult`

Both write `out_path` atomically and raise `ConvertError` (an `MfcError` naming the
offending file) for bad input.
"""

from __future__ import annotations

from toolchain.convert.arch import SUPPORTED
from toolchain.convert.convert import ConvertResult, convert_hf_dir
from toolchain.convert.errors import ConvertError
from toolchain.convert.lora import convert_lora

__all__ = ["SUPPORTED", "ConvertError", "ConvertResult", "convert_hf_dir", "convert_lora"]
