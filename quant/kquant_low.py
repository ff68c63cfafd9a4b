"""Q2_K and Q3_K: 256-element super-blocks of sixteen 16-element sub-blocks
(`quantize_row_q2_K_ref`/`_impl`, `quantize_row_q3_K_ref`/`_impl`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quant.kpack import (
    QK_K,
    half,
    pack_2bit,
    pack_hmask,
    pack_q3_scales,
    requant,
    unpack_2bit,
    unpack_hmask,
    unpack_q3_scales,
)
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    Ints,
    element_major,
    fp16_bytes,
    fp16_round,
    nearest_int,
    seq_sum,
    signed_absmax_1d,
)
from quant.qx_search import make_qx_quants
from quant.search import make_q3_quants, make_qkx_quants, make_qkx_scales, make_qp_quants


def _sigma2(x: Floats, factor: float) -> Floats:
    """`factor * (sum of x*x over the super-block) / 256`, summed in C order."""
    return (F32(factor) * seq_sum(element_major(x * x, QK_K)) / F32(QK_K)).astype(F32)


def _impl_weights(X: Floats, qw: Floats, sigma2: Floats) -> Floats:
    """Element-major `qw * sqrtf(sigma2 + x*x)` for 16-element sub-blocks."""
    return np.asarray(element_major(qw, 16) * np.sqrt(np.repeat(sigma2, 16) + X * X), dtype=F32)


def quantize_q2_k(x: Floats, qw: Floats | None = None) -> Bytes:
    nb = x.shape[0]
    X = element_major(x, 16)  # (16, nb*16)
    L: Floats | Callable[[Ints], Floats]
    if qw is None:
        W = np.abs(X)
        scales, mins = make_qkx_scales(X, W, 3, -0.5, 0.1, 15, True)

        def search_levels(cols: Ints) -> Floats:
            # the search's levels are kept only where d is 0: searched again for those
            return make_qkx_quants(X[:, cols], W[:, cols], 3, -0.5, 0.1, 15, True)[2]

        L = search_levels
        scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
        max_scale = np.maximum(scales.max(axis=1), F32(0.0))
        max_min = np.maximum(mins.max(axis=1), F32(0.0))
        # a subnormal max gives inf here, as in C (overflow is that, not an error)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            isc = (F32(15.0) / max_scale).astype(F32)
            imn = (F32(15.0) / max_min).astype(F32)
            ls = nearest_int((isc[:, None] * scales).astype(F32))
            lm = nearest_int((imn[:, None] * mins).astype(F32))
        ls = np.where((max_scale > 0)[:, None], ls, 0)
        lm = np.where((max_min > 0)[:, None], lm, 0)
        sc = (ls | (lm << 4)) & 0xFF
        d = np.where(max_scale > 0, fp16_round((max_scale / F32(15.0)).astype(F32)), F32(0.0))
        dmin = np.where(max_min > 0, fp16_round((max_min / F32(15.0)).astype(F32)), F32(0.0))
    else:
        W = _impl_weights(X, qw, _sigma2(x, 1.0))
        sw = np.ascontiguousarray(seq_sum(W).reshape(nb, 16).T)
        scales, mins, L = make_qkx_quants(X, W, 3, -0.9, 0.05, 36, False, v3=True)
        dm, Ls = make_qp_quants(np.ascontiguousarray(scales.reshape(nb, 16).T), 15, sw)
        mm, Lm = make_qp_quants(np.ascontiguousarray(mins.reshape(nb, 16).T), 15, sw)
        sc = (Ls.T.astype(np.int32) | (Lm.T.astype(np.int32) << 4)) & 0xFF
        d, dmin = fp16_round(dm), fp16_round(mm)
    d = d.astype(F32)
    dmin = dmin.astype(F32)
    dj = (d[:, None] * (sc & 15).astype(F32)).astype(F32).reshape(-1)
    dmj = (dmin[:, None] * (sc >> 4).astype(F32)).astype(F32).reshape(-1)
    levels = requant(x, dj, dmj, L, 0, 3)
    return np.concatenate(
        [sc.astype(np.uint8), pack_2bit(levels), fp16_bytes(d), fp16_bytes(dmin)], axis=1
    )


def quantize_q3_k(x: Floats, qw: Floats | None = None) -> Bytes:
    nb = x.shape[0]
    X = element_major(x, 16)
    if qw is None:
        scales, L = make_q3_quants(X, 4)
        scales = scales.reshape(nb, 16)
        max_scale, _ = signed_absmax_1d(scales)
        nz = max_scale != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = (F32(-32.0) / max_scale).astype(F32)
            l8 = nearest_int((iscale[:, None] * scales).astype(F32)) & 0xFF
        l8 = l8.astype(np.uint8).view(np.int8).astype(np.int32)
        l6 = np.where(nz[:, None], np.clip(l8, -32, 31) + 32, 0)
        packed = pack_q3_scales(l6)
        with np.errstate(divide="ignore"):
            d = np.where(nz, fp16_round((F32(1.0) / iscale).astype(F32)), F32(0.0))
    else:
        W = _impl_weights(X, qw, _sigma2(x, 2.0))
        sw = np.ascontiguousarray(seq_sum(W).reshape(nb, 16).T)
        scales, L = make_qx_quants(X, 4, W)
        d_block, Ls = make_qx_quants(np.ascontiguousarray(scales.reshape(nb, 16).T), 32, sw)
        l6 = Ls.T.astype(np.int32)  # 0..63: the six bits the scales keep
        packed = pack_q3_scales(l6)
        d = fp16_round(d_block)
    d = d.astype(F32)
    sc = l6 - 32
    dj = (d[:, None] * sc.astype(F32)).astype(F32).reshape(-1)
    levels = requant(x, dj, None, L, -4, 3, offset=4)
    hmask, low = pack_hmask(levels)
    return np.concatenate([hmask, pack_2bit(low), packed, fp16_bytes(d)], axis=1)


def dequantize_q2_k(b: Bytes) -> Floats:
    sc = b[:, 0:16].astype(np.int32)
    d, dmin = half(b[:, 80:82]), half(b[:, 82:84])
    dl = np.repeat((d * (sc & 15).astype(F32)).astype(F32), 16, axis=1)
    ml = np.repeat((dmin * (sc >> 4).astype(F32)).astype(F32), 16, axis=1)
    q = unpack_2bit(b[:, 16:80]).astype(F32)
    return (dl * q - ml).astype(F32)


def dequantize_q3_k(b: Bytes) -> Floats:
    d = half(b[:, 108:110])
    dl = np.repeat((d * (unpack_q3_scales(b[:, 96:108]) - 32).astype(F32)).astype(F32), 16, axis=1)
    q = unpack_2bit(b[:, 32:96]) - 4 * (1 - unpack_hmask(b[:, 0:32]))
    return np.asarray(dl * q.astype(F32), dtype=F32)
