"""F32, F16 and BF16 "blocks" of one element: the conversions ggml uses for them."""

from __future__ import annotations

import numpy as np

from quant.numerics import F32, Bytes, Floats


def quantize_f32(x: Floats) -> Bytes:
    return np.ascontiguousarray(x, dtype="<f4").view(np.uint8).reshape(-1, 4)


def quantize_f16(x: Floats) -> Bytes:
    """`ggml_fp32_to_fp16_row`: IEEE round-to-nearest-even (numpy's conversion is the same)."""
    with np.errstate(over="ignore"):  # overflow to inf is caught by validation
        return np.ascontiguousarray(x.astype("<f2")).view(np.uint8).reshape(-1, 2)


def quantize_bf16(x: Floats) -> Bytes:
    """`ggml_fp32_to_bf16_row_ref`: round-to-nearest-even on the high half; NaN stays quiet."""
    u = np.ascontiguousarray(x, dtype="<f4").view("<u4").reshape(-1)
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    out = np.where(nan, (u >> np.uint32(16)) | np.uint32(64), rounded).astype("<u2")
    return out.view(np.uint8).reshape(-1, 2)


def dequantize_f32(b: Bytes) -> Floats:
    return np.ascontiguousarray(b).view("<f4").astype(F32).reshape(-1, 1)


def dequantize_f16(b: Bytes) -> Floats:
    return np.ascontiguousarray(b).view("<f2").astype(F32).reshape(-1, 1)


def dequantize_bf16(b: Bytes) -> Floats:
    u = np.ascontiguousarray(b).view("<u2").astype(np.uint32) << np.uint32(16)
    return u.view(F32).reshape(-1, 1)
