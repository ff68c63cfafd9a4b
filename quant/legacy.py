"""The 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.

Quantizers take blocks as rows of a (nblocks, 32) float32 array and return (nblocks,
type_size) uint8. With an importance matrix (`qw`, the per-column weights of each block,
and `sigma2`, the per-block row statistic) they follow `quantize_row_*_impl`; without, the
`_ref` functions, which is what llama-quantize calls in that case.
"""

from __future__ import annotations

import numpy as np

from quant.numerics import (
    F32,
    Bytes,
    Floats,
    element_major,
    first_max,
    first_min,
    signed_absmax,
)
from quant.qx_search import make_qx_quants
from quant.search import make_qkx_quants

QK = 32


def _ids(d: Floats) -> Floats:
    """`id = d ? 1.0f/d : 0.0f`."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, F32(1.0) / d, F32(0.0)).astype(F32)


def _levels(V: Floats, bias: float, top: int | None, ids: Floats) -> Bytes:
    """`MIN(top, (int8_t)(v + bias))` for element-major v = x*id (or (x - min)*id), in place.

    v is within [-nmax, nmax] (or [0, nmax]) for every block whose `id` is finite, so the
    sum is positive and a truncating cast is exact; blocks whose `id` overflowed get what
    the C cast gives for inf/NaN (0). The cast gives at most `top + 1` (v may pass nmax by
    an ulp or two), and `top + 1` is a power of two, so `q - (q >> bits)` is the MIN: one
    pass over bytes instead of a float compare.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        V += F32(bias)
        bad = ~np.isfinite(ids)
        if bad.any():
            V[:, bad] = 0
        q = V.astype(np.uint8)
    if top is not None:
        q -= q >> (top + 1).bit_length() - 1
    return q


def _blocks(*fields: Bytes, halves: tuple[Floats, ...]) -> Bytes:
    """Assemble blocks: the fp16 `halves` (d, m), then the element-major byte fields.

    A row of an element-major field is one byte column of the blocks: copying row by row
    (one long strided loop each) costs a third of a transposing copy, whose inner loop is a
    block's 16-32 bytes; an fp16 goes in as one strided uint16 store.
    """
    nb = halves[0].shape[0]
    width = 2 * len(halves) + sum(f.shape[0] for f in fields)
    out = np.empty((nb, width), dtype=np.uint8)
    for k, h in enumerate(halves):
        column = np.ndarray((nb,), dtype="<u2", buffer=out, offset=2 * k, strides=(width,))
        column[...] = h.astype("<f2").view("<u2")
    at = 2 * len(halves)
    for f in fields:
        for j in range(f.shape[0]):
            out[:, at + j] = f[j]
        at += f.shape[0]
    return out


def _nibbles(q: Bytes) -> Bytes:
    """`qs[j] = q[j] | q[j+16] << 4` (element-major in, element-major out): on eight bytes
    at a time (uint64 lanes, the shifted nibbles masked per byte), a third of the time."""
    q = np.ascontiguousarray(q)
    low, high = (q[a : a + 16].reshape(-1).view(np.uint64) for a in (0, 16))
    out = (low & 0x0F0F0F0F0F0F0F0F) | ((high << 4) & 0xF0F0F0F0F0F0F0F0)
    return np.asarray(out).view(np.uint8).reshape(16, -1)


def _qh(q: Bytes) -> Bytes:
    """The fifth bits as the little-endian u32 `qh` (4 element-major bytes per block)."""
    return np.packbits((q >> 4) & 1, axis=0, bitorder="little")


def quantize_q8_0(x: Floats) -> Bytes:
    X = element_major(x, QK)
    amax = np.maximum(X.max(axis=0), -X.min(axis=0)) + F32(0.0)  # +0, never -0
    d = (amax / F32(127.0)).astype(F32)
    ids = _ids(d)
    with np.errstate(invalid="ignore", over="ignore"):
        np.multiply(X, ids, out=X)
        # roundf (ties away from zero) == trunc(v + copysign(0.5 - 2**-25, v)) for |v| < 2**23
        half = (X.view(np.int32) & np.int32(-(2**31))) | np.float32(0.49999997).view(np.int32)
        X += half.view(F32)
        bad = ~np.isfinite(ids)
        if bad.any():
            X[:, bad] = 0
        q = X.astype(np.int8)
    return _blocks(q.view(np.uint8), halves=(d,))


def _symmetric(
    x: Floats, nmax: int, qw: Floats | None, sigma2: Floats | None
) -> tuple[Floats, Bytes]:
    """Q4_0/Q5_0 levels 0..2nmax-1: `_ref` (d = max/-nmax) or `_impl` (make_qx_quants)."""
    X = element_major(x, QK)
    if qw is None or sigma2 is None:
        mx, _ = signed_absmax(X)
        d = (mx / F32(-nmax)).astype(F32)
        ids = _ids(d)
        with np.errstate(invalid="ignore", over="ignore"):
            np.multiply(X, ids, out=X)  # X is this function's own copy
        return d, _levels(X, nmax + 0.5, 2 * nmax - 1, ids)
    W = _impl_weights(X, element_major(qw, QK), sigma2)
    d, L = make_qx_quants(X, nmax, W)
    return d, L.astype(np.uint8)


def _affine(
    x: Floats, nmax: int, qw: Floats | None, sigma2: Floats | None
) -> tuple[Floats, Floats, Bytes]:
    """Q4_1/Q5_1: d, m and levels, by `_ref` (min/max) or `_impl` (make_qkx3_quants)."""
    X = element_major(x, QK)
    if qw is None or sigma2 is None:
        mn = first_min(X)
        mx = first_max(X)
        d = ((mx - mn) / F32(nmax)).astype(F32)
        ids = _ids(d)
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(X, mn, out=X)
            np.multiply(X, ids, out=X)
        return d, mn, _levels(X, 0.5, 15 if nmax == 15 else None, ids)
    W = _impl_weights(X, element_major(qw, QK), sigma2)
    scale, the_min, L = make_qkx_quants(X, W, nmax, -0.9, 0.05, 36, False, v3=True)
    return scale, (-the_min).astype(F32), L.astype(np.uint8)


def _impl_weights(X: Floats, QW: Floats, sigma2: Floats) -> Floats:
    """`weight[j] = qw[j] * sqrtf(sigma2 + x[j]*x[j])`, element-major."""
    return np.asarray(QW * np.sqrt(sigma2 + X * X), dtype=F32)


def quantize_q4_0(x: Floats, qw: Floats | None = None, sigma2: Floats | None = None) -> Bytes:
    d, q = _symmetric(x, 8, qw, sigma2)
    return _blocks(_nibbles(q), halves=(d,))


def quantize_q5_0(x: Floats, qw: Floats | None = None, sigma2: Floats | None = None) -> Bytes:
    d, q = _symmetric(x, 16, qw, sigma2)
    return _blocks(_qh(q), _nibbles(q), halves=(d,))


def quantize_q4_1(x: Floats, qw: Floats | None = None, sigma2: Floats | None = None) -> Bytes:
    d, m, q = _affine(x, 15, qw, sigma2)
    return _blocks(_nibbles(q), halves=(d, m))


def quantize_q5_1(x: Floats, qw: Floats | None = None, sigma2: Floats | None = None) -> Bytes:
    d, m, q = _affine(x, 31, qw, sigma2)
    return _blocks(_qh(q), _nibbles(q), halves=(d, m))


# ---- dequantization: the C `dequantize_row_*` arithmetic, float32 -------------------------


def _half(b: Bytes) -> Floats:
    return np.ascontiguousarray(b).view("<f2").astype(F32)


def _unpack_nibbles(qs: Bytes) -> np.ndarray:
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def _unpack_qh(qh: Bytes) -> np.ndarray:
    bits = np.ascontiguousarray(qh).view("<u4")
    return ((bits >> np.arange(QK, dtype=np.uint32)) & 1).astype(np.int32) << 4


def dequantize_q8_0(b: Bytes) -> Floats:
    d = _half(b[:, 0:2])
    return (b[:, 2:].view(np.int8).astype(F32) * d).astype(F32)


def dequantize_q4_0(b: Bytes) -> Floats:
    d = _half(b[:, 0:2])
    return ((_unpack_nibbles(b[:, 2:]) - 8).astype(F32) * d).astype(F32)


def dequantize_q4_1(b: Bytes) -> Floats:
    d, m = _half(b[:, 0:2]), _half(b[:, 2:4])
    return (_unpack_nibbles(b[:, 4:]).astype(F32) * d + m).astype(F32)


def dequantize_q5_0(b: Bytes) -> Floats:
    d = _half(b[:, 0:2])
    q = _unpack_nibbles(b[:, 6:]) | _unpack_qh(b[:, 2:6])
    return np.asarray((q - 16).astype(F32) * d, dtype=F32)


def dequantize_q5_1(b: Bytes) -> Floats:
    d, m = _half(b[:, 0:2]), _half(b[:, 2:4])
    q = _unpack_nibbles(b[:, 8:]) | _unpack_qh(b[:, 4:8])
    return np.asarray(q.astype(F32) * d + m, dtype=F32)
