"""Bit layouts of the 256-element K-quant super-blocks (pack for quantizing, unpack for
dequantizing), vectorised over super-blocks: every array is (nblocks, ...)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quant.numerics import F32, Bytes, Floats, nearest_int

QK_K = 256
Ints = np.ndarray


def half(b: Bytes) -> Floats:
    """fp16 fields (nblocks, 2) -> float32 (nblocks, 1)."""
    return np.ascontiguousarray(b).view("<f2").astype(F32)


def requant(  # noqa: PLR0917
    x: Floats,
    d: Floats,
    dm: Floats | None,
    L: Floats | Callable[[Ints], Floats],
    lo: int,
    hi: int,
    offset: int = 0,
) -> Bytes:
    """Re-quantize with the stored scales, `l = clamp(nearest_int((x + dm)/d), lo, hi) +
    offset`, as (nblocks, 256) uint8 levels in element order.

    `x` is the input as the kernel got it, (nblocks, 256); d, dm one value per sub-block
    (in order). Sub-blocks whose `d` is 0 keep the levels the search left (C's
    `if (!d) continue;`): `L`, element-major (n, nsub) with the offset already added, or
    a function giving those sub-blocks' levels only (by their indices), for a search that
    did not build them all. Working on `x` as it lies (a row per sub-block) costs a
    broadcast of d per row, far less than turning element-major levels back (a byte-wise
    transpose, ~0.6 ms per million weights).
    """
    xs = x.reshape(d.size, -1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dm is None:
            v = np.divide(xs, d[:, None])
        else:
            v = xs + dm[:, None]
            np.divide(v, d[:, None], out=v)
        top, bottom = v.max(), v.min()  # NaN makes both tests fail
        if top <= F32(4194303.0) and bottom >= F32(-4194303.0):
            np.rint(v, out=v)
        else:
            v = nearest_int(v).astype(F32)
    np.clip(v, F32(lo), F32(hi), out=v)
    if offset:
        v += F32(offset)
    skip = np.flatnonzero(d == 0)
    if skip.size:
        v[skip] = (L(skip) if callable(L) else L[:, skip]).T
    return v.astype(np.uint8).reshape(-1, QK_K)


# ---- Q4_K / Q5_K: eight 6-bit scales and mins in 12 bytes ---------------------------------


def pack_scale_min_k4(ls: Ints, lm: Ints) -> Bytes:
    out = np.empty((ls.shape[0], 12), dtype=np.int32)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 15) | ((lm[:, 4:8] & 15) << 4)
    return (out & 0xFF).astype(np.uint8)


def unpack_scale_min_k4(b: Bytes) -> tuple[Ints, Ints]:
    b = b.astype(np.int32)
    sc = np.concatenate([b[:, 0:4] & 63, (b[:, 8:12] & 15) | ((b[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([b[:, 4:8] & 63, (b[:, 8:12] >> 4) | ((b[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


# ---- Q3_K: sixteen 6-bit scales in 12 bytes -------------------------------------------------


def pack_q3_scales(l6: Ints) -> Bytes:
    out = np.zeros((l6.shape[0], 12), dtype=np.int32)
    out[:, 0:8] = (l6[:, 0:8] & 15) | ((l6[:, 8:16] & 15) << 4)
    hi = l6 >> 4
    for j in range(16):
        out[:, 8 + j % 4] |= hi[:, j] << (2 * (j // 4))
    return (out & 0xFF).astype(np.uint8)


def unpack_q3_scales(b: Bytes) -> Ints:
    b = b.astype(np.int32)
    low = np.concatenate([b[:, 0:8] & 15, b[:, 0:8] >> 4], axis=1)
    j = np.arange(16)
    high = (b[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return np.asarray(low | (high << 4))


# ---- quant bit planes ------------------------------------------------------------------------
#
# The packers work on eight levels at a time, a uint64 per eight bytes: a shift of a few
# bits, masked where it could spill into the next byte, moves every byte's bits at once,
# so each pass is over an eighth of the elements (a third of the time of byte passes).

_LANES = 0x0101010101010101  # one in every byte of a uint64


def _lanes(L: Bytes) -> Ints:
    """(nblocks, 256) uint8 levels as (nblocks, 32) uint64, eight levels each."""
    lanes: Ints = np.ascontiguousarray(L, dtype=np.uint8).view(np.uint64)
    return lanes


def pack_2bit(L: Bytes) -> Bytes:
    """`qs[32h+l] = L[128h+l] | L[128h+l+32]<<2 | L[128h+l+64]<<4 | L[128h+l+96]<<6`."""
    q = _lanes(L).reshape(-1, 2, 4, 4)
    out = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return np.asarray(out).view(np.uint8).reshape(-1, 64)


def unpack_2bit(qs: Bytes) -> Ints:
    q = qs.reshape(-1, 2, 1, 32).astype(np.int32)
    shifts = (2 * np.arange(4)).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, QK_K)


def pack_hmask(L: Bytes) -> tuple[Bytes, Bytes]:
    """Q3_K (levels 0..7): bit j/32 of byte j%32 set where L[j] > 3, and L with those 4
    removed."""
    u = _lanes(L)
    high = ((u >> 2) & _LANES).reshape(-1, 8, 4)
    hm = high[:, 0].copy()
    for k in range(1, 8):
        hm |= high[:, k] << k
    low = u & (3 * _LANES)
    return hm.view(np.uint8).reshape(-1, 32), low.view(np.uint8).reshape(-1, QK_K)


def unpack_hmask(hm: Bytes) -> Ints:
    bits = (hm.astype(np.int32)[:, None, :] >> np.arange(8).reshape(1, 8, 1)) & 1
    return bits.reshape(-1, QK_K)


def pack_nibbles64(L: Bytes) -> Bytes:
    """Q4_K/Q5_K: `qs[32c+l] = L[64c+l] | L[64c+l+32]<<4` (low four bits)."""
    q = _lanes(L).reshape(-1, 4, 2, 4)
    out = (q[:, :, 0] & (15 * _LANES)) | ((q[:, :, 1] << 4) & (240 * _LANES))
    return out.view(np.uint8).reshape(-1, 128)


def unpack_nibbles64(qs: Bytes) -> Ints:
    q = qs.reshape(-1, 4, 1, 32).astype(np.int32)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, QK_K)


def pack_qh_q5k(L: Bytes) -> Bytes:
    """Q5_K: bit 2c (2c+1) of `qh[l]` is bit 4 of L[64c+l] (L[64c+l+32])."""
    hb = ((_lanes(L) >> 4) & _LANES).reshape(-1, 8, 4)
    qh = hb[:, 0].copy()
    for k in range(1, 8):
        qh |= hb[:, k] << k
    return qh.view(np.uint8).reshape(-1, 32)


def unpack_qh_q5k(qh: Bytes) -> Ints:
    shifts = np.arange(8).reshape(1, 4, 2, 1)
    return (((qh.astype(np.int32)[:, None, None, :] >> shifts) & 1) << 4).reshape(-1, QK_K)


def pack_q6(L: Bytes) -> tuple[Bytes, Bytes]:
    """`ql`: low nibbles of L[64h+l] | L[64h+l+32]<<4 pairs, `qh`: the top two bits of four."""
    q = _lanes(L).reshape(-1, 2, 4, 4)
    ql = (q[:, :, :2] & (15 * _LANES)) | ((q[:, :, 2:] << 4) & (240 * _LANES))
    h = (q >> 4) & (3 * _LANES)
    qh = h[:, :, 0] | (h[:, :, 1] << 2) | (h[:, :, 2] << 4) | (h[:, :, 3] << 6)
    return ql.view(np.uint8).reshape(-1, 128), qh.view(np.uint8).reshape(-1, 64)


def unpack_q6(ql: Bytes, qh: Bytes) -> Ints:
    a = ql.reshape(-1, 2, 2, 32).astype(np.int32)
    h = qh.reshape(-1, 2, 1, 32).astype(np.int32)
    lo = np.stack([a[:, :, 0] & 15, a[:, :, 1] & 15, a[:, :, 0] >> 4, a[:, :, 1] >> 4], axis=2)
    high = (h >> (2 * np.arange(4)).reshape(1, 1, 4, 1)) & 3
    return np.asarray(lo | (high << 4)).reshape(-1, QK_K)
