"""IQ1_M: 256-element super-blocks of sixteen 16-element blocks; each group of eight values
is a point of IQ1_S's lattice with its own shift (+-1/8), each block a 3-bit scale, and the
super-block's fp16 scale is spread over the top nibbles of the scales
(`quantize_row_iq1_m_impl`).

The split search is IQ1_S's with running sums kept per half of the block, so the two groups
can take different shifts (four combinations per split); after it, the super-block scale is
refitted to the rounded block scales over all 256 values.
"""

from __future__ import annotations

import numpy as np

from quant.iq1_search import first_best, split_levels
from quant.iquant1 import DELTA, X_M, X_P, snap_and_refit
from quant.kpack import half
from quant.lattice8 import Lattice8, iq1_lattice
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    Ints,
    column_slices,
    element_major,
    nearest_int,
    safe_div,
    seq_sum,
)

_EPS = F32(1e-7)  # GROUP_MAX_EPS_IQ1_M
_N = 16
_I1, _I2 = np.triu_indices(_N + 1)
_CP = tuple(
    F32(v) for v in ((X_P[0] * X_P[0]) - (X_P[1] * X_P[1]), (X_P[1] * X_P[1]) - (X_P[2] * X_P[2]))
)
_CM = tuple(
    F32(v) for v in ((X_M[0] * X_M[0]) - (X_M[1] * X_M[1]), (X_M[1] * X_M[1]) - (X_M[2] * X_M[2]))
)


def _halves(perm: Ints, X: Floats, W: Floats) -> tuple[Floats, Floats]:
    """Running sums of w*x and of w in sorted order, one per half of the block (an element
    of the other half adds nothing): (2, n+1, B) each."""
    n, B = X.shape
    in_second = perm >= n // 2
    wx = np.take_along_axis((W * X).astype(F32), perm, axis=0)
    ws = np.take_along_axis(W, perm, axis=0)
    px = np.zeros((2, n + 1, B), dtype=F32)
    pw = np.zeros((2, n + 1, B), dtype=F32)
    for h, mask in enumerate((~in_second, in_second)):
        np.cumsum(np.where(mask, wx, F32(0.0)), axis=0, dtype=F32, out=px[h, 1:])
        np.cumsum(np.where(mask, ws, F32(0.0)), axis=0, dtype=F32, out=pw[h, 1:])
    return px, pw


def _candidates(px: Floats, pw: Floats) -> tuple[Floats, Floats]:
    """sumqx, sumq2 of every (split, shift pair) in C's order: (i1, i2), then k = 0..3 for
    (+,+), (+,-), (-,+), (-,-)."""
    p2, m2 = X_P[2], X_M[2]
    qxp: list[Floats] = []
    qxm: list[Floats] = []
    q2p: list[Floats] = []
    q2m: list[Floats] = []
    for h in range(2):
        sx = (px[h, _I1] + px[h, _I2]).astype(F32)
        txs, tws = px[h, _N], pw[h, _N]
        a, b = pw[h, _I1], pw[h, _I2]
        qxp.append(((txs * p2).astype(F32) - sx).astype(F32))
        qxm.append(((txs * m2).astype(F32) - sx).astype(F32))
        for out, t2, (c1, c2) in ((q2p, p2, _CP), (q2m, m2, _CM)):
            base = ((tws * t2).astype(F32) * t2).astype(F32)
            out.append(
                ((base + (a * c1).astype(F32)).astype(F32) + (b * c2).astype(F32)).astype(F32)
            )
    qx = np.stack([qxp[0] + qxp[1], qxp[0] + qxm[1], qxm[0] + qxp[1], qxm[0] + qxm[1]], axis=1)
    q2 = np.stack([q2p[0] + q2p[1], q2p[0] + q2m[1], q2m[0] + q2p[1], q2m[0] + q2m[1]], axis=1)
    B = px.shape[2]
    return qx.astype(F32).reshape(-1, B), q2.astype(F32).reshape(-1, B)


def _group_values(k: Ints) -> Floats:
    """The level values (2, 3, B) of the two groups of blocks with shift pair k."""
    first = np.where((k < 2)[None, :], X_P[:, None], X_M[:, None])
    second = np.where((k % 2 == 0)[None, :], X_P[:, None], X_M[:, None])
    return np.stack([first, second]).astype(F32)


def _block_search(lat: Lattice8, X: Floats, W: Floats) -> tuple[Floats, Ints, Ints]:
    """Scale, shift pair (0..3) and grid indices (2, B) of each 16-element column."""
    live = np.abs(X).max(axis=0) >= _EPS
    perm = np.argsort(X, axis=0, kind="stable")
    qx, q2 = _candidates(*_halves(perm, X, W))
    win, scale = first_best(qx, q2)
    ok = live & (win >= 0)
    pair = np.maximum(win, 0) // 4
    k = np.maximum(win, 0) % 4
    L = split_levels(perm, _I1[pair], _I2[pair])
    neg = scale < 0
    L = np.where(neg[None, :], 2 - L, L)
    scale = np.where(neg, -scale, scale).astype(F32)
    k = np.where(neg, 3 - k, k)
    xx = _group_values(k)
    idx = snap_and_refit(lat, L, X, W, scale=scale, xx=xx, ok=ok)
    return np.where(ok, scale, F32(0.0)).astype(F32), np.where(ok, k, 0), idx


def _super_major(A: Floats, nb: int) -> Floats:
    """(16, 16*nb) element-major blocks -> (256, nb) element-major super-blocks."""
    return np.ascontiguousarray(A.reshape(_N, nb, 16).transpose(2, 0, 1).reshape(256, nb))


def quantize_iq1_m(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 56) IQ1_M blocks."""
    lat = iq1_lattice()
    nb = x.shape[0]
    X = element_major(x, _N)  # block b of super-block s is column 16*s + b
    sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
    sigma2 = (F32(2.0) * sumx2 / F32(256.0)).astype(F32)
    XX = (X * X).astype(F32)
    if qw is None:
        W = XX
    else:
        sig = np.repeat(sigma2, 16)[None, :]
        W = (element_major(qw, _N) * np.sqrt((sig + XX).astype(F32))).astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    k = np.empty(B, dtype=np.int64)
    idx = np.empty((2, B), dtype=np.int64)
    for sl in column_slices(32, B):  # 2048 blocks: the candidates stay in cache
        scale[sl], k[sl], idx[:, sl] = _block_search(
            lat, np.ascontiguousarray(X[:, sl]), np.ascontiguousarray(W[:, sl])
        )
    scales = scale.reshape(nb, 16)
    max_scale = scales.max(axis=1)
    ok = max_scale != 0
    d = (max_scale / F32(15.0)).astype(F32)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        idv = np.where(ok, F32(1.0) / d, F32(0.0)).astype(F32)
        v = (F32(0.5) * ((idv[:, None] * scales).astype(F32) - F32(1.0))).astype(F32)
    ls = np.where(ok[:, None], np.clip(nearest_int(v), 0, 7), 0)  # (nb, 16)
    # the super-block scale, refitted to the rounded block scales over all 256 values
    xx = _group_values(k)  # (2, 3, B)
    lv = (lat.values[idx].astype(np.int64) - 1) // 2  # (2, B, 8)
    q = np.take_along_axis(xx, lv.transpose(0, 2, 1), axis=1).reshape(_N, B)
    q = (q * (2 * ls.reshape(B) + 1).astype(F32)).astype(F32)
    wq = (W * q).astype(F32)
    sumqx = seq_sum(_super_major((wq * X).astype(F32), nb))
    sumq2 = seq_sum(_super_major((wq * q).astype(F32), nb))
    d = np.where(sumq2 > 0, safe_div(sumqx, sumq2), d).astype(F32)
    s16 = np.where(ok, (d * F32(1.1125)).astype(F32), F32(0.0)).astype("<f2").view("<u2")
    s16 = s16.astype(np.int64)
    out = np.zeros((nb, 56), dtype=np.uint8)
    g = idx.reshape(2, nb, 16).transpose(1, 2, 0)  # (nb, block, group)
    out[:, 0:32] = (g & 255).reshape(nb, 32).astype(np.uint8)
    masks = np.array([0x00, 0x80, 0x08, 0x88])
    qh = (g[:, :, 0] >> 8) | ((g[:, :, 1] >> 8) << 4)
    out[:, 32:48] = qh | np.where(ok[:, None], masks[k.reshape(nb, 16)], 0)
    sc = (ls.reshape(nb, 4, 4) << (3 * np.arange(4))).sum(axis=2)  # (nb, 4)
    sc |= np.where(ok[:, None], (s16[:, None] >> (4 * np.arange(4))) & 15, 0) << 12
    out[:, 48:56] = sc.astype("<u2").view(np.uint8).reshape(nb, 8)
    return out


def dequantize_iq1_m(b: Bytes) -> Floats:
    lat = iq1_lattice()
    nb = b.shape[0]
    sc = np.ascontiguousarray(b[:, 48:56]).view("<u2").astype(np.int64)  # (nb, 4)
    s16 = ((sc >> 12) << (4 * np.arange(4))).sum(axis=1).astype("<u2")
    d = half(s16.view(np.uint8).reshape(nb, 2))  # (nb, 1)
    ls = (sc[:, :, None] >> (3 * np.arange(4))) & 7  # (nb, 4, 4): block 4j + m
    dl = (d * (2 * ls.reshape(nb, 16) + 1).astype(F32)).astype(F32)
    qs = b[:, 0:32].astype(np.int64).reshape(nb, 16, 2)
    qh = b[:, 32:48].astype(np.int64)
    grid = qs | (np.stack([qh & 7, (qh >> 4) & 7], axis=2) << 8)
    neg = np.stack([qh & 0x08, qh & 0x80], axis=2) != 0
    delta = np.where(neg, -DELTA, DELTA).astype(F32)  # (nb, 16, 2)
    vals = ((lat.values[grid].astype(np.int32) - 3) // 2).astype(F32)  # (nb, 16, 2, 8)
    out: Floats = (dl[:, :, None, None] * (vals + delta[:, :, :, None]).astype(F32)).astype(F32)
    return out.reshape(nb, 256)
