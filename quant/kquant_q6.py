"""Q6_K: 256-element super-blocks of sixteen 16-element sub-blocks with int8 scales
(`quantize_row_q6_K_ref`/`_impl`)."""

from __future__ import annotations

import numpy as np

from quant.kpack import half, pack_q6, requant, unpack_q6
from quant.numerics import (
    F32,
    GROUP_MAX_EPS,
    Bytes,
    Floats,
    element_major,
    fp16_bytes,
    fp16_round,
    nearest_int,
    signed_absmax_1d,
)
from quant.qx_search import make_qx_quants, make_qx_scales


def quantize_q6_k(x: Floats, qw: Floats | None = None) -> Bytes:
    nb = x.shape[0]
    X = element_major(x, 16)
    QW = None if qw is None else element_major(qw, 16)
    scales = make_qx_scales(X, 32, QW)

    def search_levels(cols: np.ndarray) -> Floats:  # the search's levels, where a sub-scale is 0
        return make_qx_quants(
            np.ascontiguousarray(X[:, cols]),
            32,
            None if QW is None else np.ascontiguousarray(QW[:, cols]),
        )[1]

    scales = scales.reshape(nb, 16)
    max_scale, max_abs = signed_absmax_1d(scales)
    zero = max_abs < GROUP_MAX_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = (F32(-128.0) / max_scale).astype(F32)
        d = fp16_round((F32(1.0) / iscale).astype(F32))
        sc = np.minimum(127, nearest_int((iscale[:, None] * scales).astype(F32)))
    sc = np.where(zero[:, None], 0, (sc & 0xFF).astype(np.uint8).view(np.int8).astype(np.int32))
    d = np.where(zero, F32(0.0), d).astype(F32)
    dj = (d[:, None] * sc.astype(F32)).astype(F32).reshape(-1)
    levels = requant(x, dj, None, search_levels, -32, 31, offset=32)
    ql, qh = pack_q6(levels)
    out = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), fp16_bytes(d)], axis=1)
    out[zero] = 0
    return out


def dequantize_q6_k(b: Bytes) -> Floats:
    d = half(b[:, 208:210])
    sc = np.repeat(b[:, 192:208].view(np.int8).astype(F32), 16, axis=1)
    q = (unpack_q6(b[:, 0:128], b[:, 128:192]) - 32).astype(F32)
    return ((d * sc).astype(F32) * q).astype(F32)
