"""Q4_K and Q5_K: 256-element super-blocks of eight 32-element sub-blocks with 6-bit scales
and mins (`quantize_row_q4_K_ref`/`_impl`, `quantize_row_q5_K_ref`/`_impl`)."""

from __future__ import annotations

import numpy as np

from quant.kpack import (
    QK_K,
    half,
    pack_nibbles64,
    pack_qh_q5k,
    pack_scale_min_k4,
    requant,
    unpack_nibbles64,
    unpack_qh_q5k,
    unpack_scale_min_k4,
)
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    element_major,
    fp16_bytes,
    fp16_round,
    nearest_int,
    seq_sum,
)
from quant.search import make_qkx_quants, make_qp_quants

# nmax, rmin, nstep of the reference search per type
_REF = {4: (15, -1.0, 20), 5: (31, -0.5, 15)}


def _quantize(x: Floats, qw: Floats | None, bits: int) -> tuple[Bytes, Bytes, Bytes]:
    """d|dmin bytes, 12 scale bytes and the levels (nblocks, 256) of Q4_K (bits=4) or Q5_K."""
    nb = x.shape[0]
    nmax, rmin, nstep = _REF[bits]
    X = element_major(x, 32)  # (32, nb*8)
    if qw is None:
        av_x = np.sqrt(seq_sum(X * X) / F32(32.0))
        W = np.abs(X)
        W += av_x
        scales, mins, L = make_qkx_quants(X, W, nmax, rmin, 0.1, nstep, False)
        scales = scales.reshape(nb, 8)
        mins = mins.reshape(nb, 8)
        max_scale = np.maximum(scales.max(axis=1), F32(0.0))
        max_min = np.maximum(mins.max(axis=1), F32(0.0))
        # a subnormal max gives inf here, as in C (overflow is that, not an error)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63.0) / max_scale, F32(0.0)).astype(F32)
            inv_min = np.where(max_min > 0, F32(63.0) / max_min, F32(0.0)).astype(F32)
            ls = np.minimum(63, nearest_int((inv_scale[:, None] * scales).astype(F32)) & 0xFF)
            lm = np.minimum(63, nearest_int((inv_min[:, None] * mins).astype(F32)) & 0xFF)
        d = fp16_round((max_scale / F32(63.0)).astype(F32))
        dmin = fp16_round((max_min / F32(63.0)).astype(F32))
    else:
        sigma2 = (F32(2.0) * seq_sum(element_major(x * x, QK_K)) / F32(QK_K)).astype(F32)
        W = element_major(qw, 32) * np.sqrt(np.repeat(sigma2, 8) + X * X)
        sw = np.ascontiguousarray(seq_sum(W).reshape(nb, 8).T)
        scales, mins, L = make_qkx_quants(X, W, nmax, -0.9, 0.05, 36, False, v3=True)
        d_block, Ls = make_qp_quants(np.ascontiguousarray(scales.reshape(nb, 8).T), 63, sw)
        m_block, Lm = make_qp_quants(np.ascontiguousarray(mins.reshape(nb, 8).T), 63, sw)
        ls = np.minimum(63, Ls.T.astype(np.int32))
        lm = np.minimum(63, Lm.T.astype(np.int32))
        d, dmin = fp16_round(d_block), fp16_round(m_block)
    packed = pack_scale_min_k4(ls, lm)
    sc, m = unpack_scale_min_k4(packed)
    dj = (d[:, None] * sc.astype(F32)).astype(F32).reshape(-1)
    dmj = (dmin[:, None] * m.astype(F32)).astype(F32).reshape(-1)
    levels = requant(x, dj, dmj, L, 0, nmax)
    head = np.concatenate([fp16_bytes(d), fp16_bytes(dmin)], axis=1)
    return head, packed, levels


def quantize_q4_k(x: Floats, qw: Floats | None = None) -> Bytes:
    head, scales, L = _quantize(x, qw, 4)
    return np.concatenate([head, scales, pack_nibbles64(L)], axis=1)


def quantize_q5_k(x: Floats, qw: Floats | None = None) -> Bytes:
    head, scales, L = _quantize(x, qw, 5)
    return np.concatenate([head, scales, pack_qh_q5k(L), pack_nibbles64(L)], axis=1)


def _scales(b: Bytes) -> tuple[Floats, Floats]:
    d, dmin = half(b[:, 0:2]), half(b[:, 2:4])
    sc, m = unpack_scale_min_k4(b[:, 4:16])
    d1 = np.repeat((d * sc.astype(F32)).astype(F32), 32, axis=1)
    m1 = np.repeat((dmin * m.astype(F32)).astype(F32), 32, axis=1)
    return d1, m1


def dequantize_q4_k(b: Bytes) -> Floats:
    d1, m1 = _scales(b)
    q = unpack_nibbles64(b[:, 16:144]).astype(F32)
    return np.asarray(d1 * q - m1, dtype=F32)


def dequantize_q5_k(b: Bytes) -> Floats:
    d1, m1 = _scales(b)
    q = (unpack_nibbles64(b[:, 48:176]) + unpack_qh_q5k(b[:, 16:48])).astype(F32)
    return np.asarray(d1 * q - m1, dtype=F32)
