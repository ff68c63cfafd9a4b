"""Quantization kernels and the per-tensor type policy, bit-exact with llama.cpp.

numpy (and gguf-py's type tables) only: this package imports nothing else of ours. It is
also the bottom layer's GGUF reader and writer (`quant.gguf_read`, `quant.gguf_write`),
which the toolchain uses for every GGUF it reads or writes. The public surface:

- `quantize(type, x, imatrix=None) -> bytes` and `dequantize(type, data, shape)` for one
  tensor, for every type in `TYPE_NAMES` (F32, F16, BF16, Q4_0 ... Q8_0, Q2_K ... Q6_K);
- `quantize_file(src, dst, ftype, ...)` for a whole GGUF file, as `llama_model_quantize`;
- `FTYPE_NAMES`, `file_type(name)`, `load_imatrix(path)`, `QuantError`.

The names are loaded on first use, so importing `quant` (or the light `quant.filetypes`,
which `mfc check` reads the QUANTIZE types from) does not import the kernels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quant.errors import QuantError
    from quant.filetypes import FTYPE_NAMES, FileType, file_type
    from quant.formats import FORMATS, TYPE_NAMES, BlockFormat, block_format
    from quant.imatrix import Imatrix, load_imatrix
    from quant.quantize_file import QuantizeProgress, QuantizeResult, TensorCache, quantize_file
    from quant.tensor import dequantize, quantize

#: public name -> the module that defines it
_HOMES = {
    "QuantError": "quant.errors",
    "FTYPE_NAMES": "quant.filetypes",
    "FileType": "quant.filetypes",
    "file_type": "quant.filetypes",
    "FORMATS": "quant.formats",
    "TYPE_NAMES": "quant.formats",
    "BlockFormat": "quant.formats",
    "block_format": "quant.formats",
    "Imatrix": "quant.imatrix",
    "load_imatrix": "quant.imatrix",
    "QuantizeProgress": "quant.quantize_file",
    "QuantizeResult": "quant.quantize_file",
    "TensorCache": "quant.quantize_file",
    "quantize_file": "quant.quantize_file",
    "dequantize": "quant.tensor",
    "quantize": "quant.tensor",
}

__all__ = [
    "FORMATS",
    "FTYPE_NAMES",
    "TYPE_NAMES",
    "BlockFormat",
    "FileType",
    "Imatrix",
    "QuantError",
    "QuantizeProgress",
    "QuantizeResult",
    "TensorCache",
    "block_format",
    "dequantize",
    "file_type",
    "load_imatrix",
    "quantize",
    "quantize_file",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this hook
    return value
