"""Quantization kernels and the per-tensor type policy, bit-exact with llama.cpp.

numpy only: this package imports nothing else of ours. The public surface:

- `quantize(type, x, imatrix=None) -> bytes` and `dequantize(type, data, shape)` for one
  tensor, for every type in `TYPE_NAMES` (F32, F16, BF16, Q4_0 ... Q8_0, Q2_K ... Q6_K);
- `quantize_file(src, dst, ftype, ...)` for a whole GGUF file, as `llama_model_quantize`;
- `FTYPE_NAMES`, `file_type(name)`, `load_imatrix(path)`, `QuantError`.
"""

from quant.errors import QuantError
from quant.formats import FORMATS, TYPE_NAMES, BlockFormat, block_format
from quant.imatrix import Imatrix, load_imatrix
from quant.policy import FTYPE_NAMES, FileType, file_type
from quant.quantize_file import QuantizeProgress, QuantizeResult, TensorCache, quantize_file
from quant.tensor import dequantize, quantize

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
