"""The 4-bit non-linear i-quants IQ4_NL (32-element blocks) and IQ4_XS (256-element
super-blocks of eight 32-element blocks with 6-bit scales), as `quantize_iq4_nl` and
`quantize_iq4_xs` (`quantize_row_iq4_nl_impl` with ntry = 7) write them.

Every element is the index of the nearest of 16 fixed levels (`kvalues_iq4nl`) after
scaling; a block's scale is the weighted least-squares fit, searched over 15 trial scales.
Blocks are processed element-major (`X[i, b]`), sums in C order.
"""

from __future__ import annotations

import numpy as np

from quant.kpack import half
from quant.numerics import (
    F32,
    GROUP_MAX_EPS,
    Bytes,
    Floats,
    Ints,
    column_slices,
    element_major,
    fp16_bytes,
    nearest_int,
    safe_div,
    seq_sum,
    signed_absmax,
    signed_absmax_1d,
)

#: `kvalues_iq4nl` of ggml-common.h
KVALUES = np.array(
    [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8
)
_VALS = KVALUES.astype(F32)
_NTRY = 7


#: `_UPPER[k + 128]`: the first level above every v in [k, k+1) (levels are integers)
_UPPER = np.clip(np.searchsorted(_VALS, np.arange(-128, 128, dtype=F32), side="right"), 1, 15)


def _bracket(v: Floats) -> tuple[Ints, Floats, Floats]:
    """The binary search of `best_index_int8`: index `mu` of the upper of the two levels
    around v, and both levels. NaN lands on the last pair, as in C."""
    with np.errstate(invalid="ignore"):
        k = np.floor(np.clip(v, F32(-128.0), F32(127.0)))
        k[np.isnan(k)] = F32(127.0)
    mu = _UPPER[k.astype(np.intp) + 128]
    return mu, _VALS[mu - 1], _VALS[mu]


def best_index(v: Floats) -> Ints:
    """`best_index_int8(16, kvalues, v)`: the nearest level, the upper one on a tie (by
    float32 distances)."""
    mu, lo, hi = _bracket(v)
    with np.errstate(invalid="ignore"):
        return np.where((v - lo) < (hi - v), mu - 1, mu).astype(np.uint8)


def _level(v: Floats) -> Floats:
    """`kvalues[best_index_int8(16, kvalues, v)]` as float32."""
    _, lo, hi = _bracket(v)
    with np.errstate(invalid="ignore"):
        return np.where((v - lo) < (hi - v), lo, hi)


def _fit(X: Floats, W: Floats, idv: Floats) -> tuple[Floats, Floats]:
    """sum(w*q*x), sum(w*q*q) per block for the levels of x*id (sequential sums)."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = _level((idv * X).astype(F32))
        wq = (W * q).astype(F32)
        return seq_sum((wq * X).astype(F32)), seq_sum((wq * q).astype(F32))


def _block_scales(X: Floats, W: Floats) -> Floats:
    """The best scale of each 32-element column of X (0 where the block is ~zero), worked
    out in cache-sized slices of columns."""
    return np.concatenate(
        [
            _slice_scales(np.ascontiguousarray(X[:, s]), np.ascontiguousarray(W[:, s]))
            for s in column_slices(*X.shape)
        ]
    )


def _slice_scales(X: Floats, W: Floats) -> Floats:
    mx, amax = signed_absmax(X)
    live = amax >= GROUP_MAX_EPS
    mx_l = np.where(live, mx, F32(1.0)).astype(F32)
    d = (-mx_l / F32(-127.0)).astype(F32)
    sumqx, sumq2 = _fit(X, W, (F32(1.0) / d).astype(F32))
    d = np.where(sumq2 > 0, safe_div(sumqx, sumq2), F32(0.0)).astype(F32)
    best = (d * sumqx).astype(F32)
    for itry in range(-_NTRY, _NTRY + 1):
        idv = (F32(itry - 127) / mx_l).astype(F32)
        sumqx, sumq2 = _fit(X, W, idv)
        with np.errstate(over="ignore", invalid="ignore"):
            better = (sumq2 > 0) & ((sumqx * sumqx).astype(F32) > (best * sumq2).astype(F32))
        if better.any():
            d = np.where(better, safe_div(sumqx, sumq2), d).astype(F32)
            best = np.where(better, d * sumqx, best).astype(F32)
    return np.where(live, d, F32(0.0)).astype(F32)


def _weights(X: Floats, qw: Floats | None, sigma2: Floats) -> Floats:
    if qw is None:
        return (X * X).astype(F32)
    w: Floats = (qw * np.sqrt((sigma2 + X * X).astype(F32))).astype(F32)
    return w


def _sigma2(X: Floats, per: int) -> Floats:
    """`sigma2 = 2/per * sum(x*x)` over each super-block of `per` values (C order)."""
    s = seq_sum(np.ascontiguousarray((X * X).astype(F32)))
    return (s * F32(2.0 / per)).astype(F32)


def _nibbles(L: Bytes) -> Bytes:
    """`q4[16*i + j] = L[32*i + j] | L[32*i + 16 + j] << 4`, element-major (n, B) -> (n/2, B)."""
    n = L.shape[0]
    blocks = L.reshape(n // 32, 32, -1)
    packed: Bytes = (blocks[:, :16] | (blocks[:, 16:] << 4)).reshape(n // 2, -1)
    return packed


def quantize_iq4_nl(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 32) float32 -> (nblocks, 18) IQ4_NL blocks."""
    X = element_major(x, 32)
    W = _weights(X, None if qw is None else element_major(qw, 32), _sigma2(X, 32))
    d = _block_scales(X, W)
    with np.errstate(divide="ignore", over="ignore"):
        idv = np.where(d != 0, F32(1.0) / d, F32(0.0)).astype(F32)
    L = best_index((idv * X).astype(F32))
    out = np.empty((X.shape[1], 18), dtype=np.uint8)
    out[:, :2] = fp16_bytes(d)
    out[:, 2:] = _nibbles(L).T
    return out


def quantize_iq4_xs(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 136) IQ4_XS blocks."""
    nb = x.shape[0]
    X = element_major(x, 32)  # sub-block b of super-block s is column 8*s + b
    sig = np.repeat(_sigma2(element_major(x, 256), 256), 8)
    W = _weights(X, None if qw is None else element_major(qw, 32), sig)
    scales = _block_scales(X, W).reshape(nb, 8)
    max_scale, _ = signed_absmax_1d(scales)
    d = (-max_scale / F32(32.0)).astype(F32)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        idv = np.where(d != 0, F32(1.0) / d, F32(0.0)).astype(F32)
        ls = np.clip(nearest_int((idv[:, None] * scales).astype(F32)), -32, 31)
        dl = (d[:, None] * ls.astype(F32)).astype(F32).reshape(-1)
        idl = np.where(dl != 0, F32(1.0) / dl, F32(0.0)).astype(F32)
    L = best_index((idl * X).astype(F32))
    u = (ls + 32).astype(np.uint16)
    scales_l = ((u[:, 0::2] & 15) | ((u[:, 1::2] & 15) << 4)).astype(np.uint8)
    scales_h = np.bitwise_or.reduce((u >> 4) << (2 * np.arange(8, dtype=np.uint16)), axis=1)
    out = np.empty((nb, 136), dtype=np.uint8)
    out[:, :2] = fp16_bytes(d)
    out[:, 2:4] = scales_h.astype("<u2").view(np.uint8).reshape(nb, 2)
    out[:, 4:8] = scales_l
    out[:, 8:] = _nibbles(L).T.reshape(nb, 128)
    return out


def _unpack(qs: Bytes) -> Bytes:
    """(nb, 16k) nibbles -> (nb, 32k) level indices in element order."""
    nb = qs.shape[0]
    q = qs.reshape(nb, -1, 16)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(nb, -1)


def dequantize_iq4_nl(b: Bytes) -> Floats:
    return (half(b[:, 0:2]) * _VALS[_unpack(b[:, 2:18])]).astype(F32)


def dequantize_iq4_xs(b: Bytes) -> Floats:
    nb = b.shape[0]
    d = half(b[:, 0:2])
    sh = b[:, 2:4].copy().view("<u2").astype(np.int32)
    sl = b[:, 4:8].astype(np.int32)
    ib = np.arange(8)
    ls = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)
    dl = (d * (ls - 32).astype(F32)).astype(F32)
    q = _VALS[_unpack(b[:, 8:136])].reshape(nb, 8, 32)
    return (dl[:, :, None] * q).astype(F32).reshape(nb, 256)
