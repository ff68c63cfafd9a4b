"""ctypes access to llama.cpp's own kernels in the installed llama-cpp-python (libggml-base)."""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path

import numpy as np

from fixtures.quant_reference import ggml_type


@cache
def libggml() -> ctypes.CDLL:
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def quantize(type_name: str, x: np.ndarray, imatrix: np.ndarray | None = None) -> bytes:
    """`ggml_quantize_chunk` over all rows of x (rows, n): what llama-quantize calls."""
    lib = libggml()
    t = ggml_type(type_name)
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, n = x.shape
    out = np.zeros(rows * lib.ggml_row_size(t, n), dtype=np.uint8)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    lib.ggml_quantize_chunk(
        t, x.ctypes.data, out.ctypes.data, 0, rows, n, None if im is None else im.ctypes.data
    )
    return out.tobytes()


def dequantize(type_name: str, data: bytes, count: int) -> np.ndarray:
    """`dequantize_row_<type>` (or the fp16/bf16 row conversions) on `count` values."""
    if type_name == "F32":
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    lib = libggml()
    out = np.zeros(count, dtype=np.float32)
    src = np.frombuffer(data, dtype=np.uint8).copy()
    name = {"F16": "ggml_fp16_to_fp32_row", "BF16": "ggml_bf16_to_fp32_row"}.get(
        type_name, f"dequantize_row_{type_name.lower().replace('_k', '_K')}"
    )
    fn = getattr(lib, name)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(src.ctypes.data, out.ctypes.data, count)
    return out


class _CpuTraits(ctypes.Structure):
    # ggml-cpu.h's ggml_type_traits_cpu: from_float, vec_dot, vec_dot_type, nrows
    _fields_ = [
        ("from_float", ctypes.c_void_p),
        ("vec_dot", ctypes.c_void_p),
        ("vec_dot_type", ctypes.c_int),
        ("nrows", ctypes.c_int64),
    ]


_VEC_DOT = ctypes.CFUNCTYPE(
    None,
    ctypes.c_int,
    ctypes.POINTER(ctypes.c_float),
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
)
_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


@cache
def libggml_cpu() -> ctypes.CDLL:
    import llama_cpp

    libggml()  # the CPU backend links against the base library
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"))
    lib.ggml_cpu_init.restype = None
    lib.ggml_cpu_init()
    lib.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_CpuTraits)
    lib.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
    return lib


def vec_dot(type_name: str, data: bytes, y: np.ndarray) -> float:
    """ggml's CPU `vec_dot` of one quantized row `data` with `y`, which is first quantized
    to the type's dot partner (Q8_0, Q8_1 or Q8_K) by that type's `from_float`: what a
    matmul computes per output element, and what test-quantize-fns measures."""
    lib = libggml_cpu()
    traits = lib.ggml_get_type_traits_cpu(ggml_type(type_name)).contents
    partner = traits.vec_dot_type
    y = np.ascontiguousarray(y, dtype=np.float32)
    qy = np.zeros(libggml().ggml_row_size(partner, y.size), dtype=np.uint8)
    partner_traits = lib.ggml_get_type_traits_cpu(partner).contents
    _FROM_FLOAT(partner_traits.from_float)(y.ctypes.data, qy.ctypes.data, y.size)
    x = np.frombuffer(data, dtype=np.uint8).copy()
    out = ctypes.c_float(0.0)
    _VEC_DOT(traits.vec_dot)(y.size, ctypes.byref(out), 0, x.ctypes.data, 0, qy.ctypes.data, 0, 1)
    return float(out.value)
