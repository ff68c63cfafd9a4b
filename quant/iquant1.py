"""IQ1_S: 256-element super-blocks of eight 32-element blocks; each group of eight values is
a point of the 2048-point lattice (`quant.lattice8`) of levels -1, 0, +1, shifted by
+-1/8 per block, and each block has a 3-bit scale (`quantize_row_iq1_s_impl`). It needs an
importance matrix.

A block's values are sorted; every split of the sorted values into the three levels and
both shifts is scored (`quant.iq1_search`); groups that land off the lattice take their
nearest neighbour and the scale is refitted. Blocks are columns of element-major arrays
(`X[i, b]`), sums in C order.
"""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError
from quant.iq1_search import first_best, nearest_neighbour2, split_levels
from quant.kpack import half
from quant.lattice8 import Lattice8, iq1_lattice, pack
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    Ints,
    column_slices,
    element_major,
    fp16_bytes,
    nearest_int,
    safe_div,
    seq_sum,
)

DELTA = F32(0.125)  # IQ1S_DELTA and IQ1M_DELTA
#: the level values with the shift +delta (x_p) and -delta (x_m)
X_P = np.array([F32(-1) + DELTA, DELTA, F32(1) + DELTA], dtype=F32)
X_M = np.array([F32(-1) - DELTA, -DELTA, F32(1) - DELTA], dtype=F32)
_EPS = F32(1e-12)  # GROUP_MAX_EPS_IQ1_S
_N = 32
_I1, _I2 = np.triu_indices(_N + 1)  # every split i1 <= i2, in C's loop order


def prefix_sums(X: Floats, W: Floats) -> tuple[Ints, Floats, Floats]:
    """The stable sort order of each column (glibc's qsort is a merge sort) and the running
    sums of w*x and w in that order, from 0: (n, B), (n+1, B), (n+1, B)."""
    perm = np.argsort(X, axis=0, kind="stable")
    n, B = X.shape
    S = np.zeros((n + 1, B), dtype=F32)
    Sw = np.zeros((n + 1, B), dtype=F32)
    np.cumsum(np.take_along_axis((W * X).astype(F32), perm, axis=0), axis=0, dtype=F32, out=S[1:])
    np.cumsum(np.take_along_axis(W, perm, axis=0), axis=0, dtype=F32, out=Sw[1:])
    return perm, S, Sw


def _candidates(S: Floats, Sw: Floats) -> tuple[Floats, Floats]:
    """sumqx, sumq2 of every (split, shift) in C's order: (i1, i2) pairs, x_p before x_m."""
    a, b, c = S[_I1], (S[_I2] - S[_I1]).astype(F32), (S[_N] - S[_I2]).astype(F32)
    wa, wb, wc = Sw[_I1], (Sw[_I2] - Sw[_I1]).astype(F32), (Sw[_N] - Sw[_I2]).astype(F32)
    qx, q2 = [], []
    for xs in (X_P, X_M):
        qx.append(
            (
                ((a * xs[0]).astype(F32) + (b * xs[1]).astype(F32)).astype(F32)
                + (c * xs[2]).astype(F32)
            ).astype(F32)
        )
        q2.append(
            (
                (
                    ((wa * xs[0]).astype(F32) * xs[0]).astype(F32)
                    + ((wb * xs[1]).astype(F32) * xs[1]).astype(F32)
                ).astype(F32)
                + ((wc * xs[2]).astype(F32) * xs[2]).astype(F32)
            ).astype(F32)
        )
    return (
        np.stack(qx, axis=1).reshape(-1, S.shape[1]),
        np.stack(q2, axis=1).reshape(-1, S.shape[1]),
    )


def snap_groups(
    lat: Lattice8, L: Ints, X: Floats, W: Floats, *, scale: Floats, xx: Floats, ok: Ints
) -> tuple[Ints, Ints]:
    """Grid index of each group of 8 (G, B) of the levels L (n, B), off-lattice groups of
    the blocks `ok` replaced by their nearest neighbour; and which blocks had one. `xx`
    (n // 8, 3, B): the level values of each group."""
    n, B = L.shape
    G = n // 8
    idx = lat.index[pack(L.reshape(G, 8, B), 1)]  # (G, B)
    off = (idx < 0) & ok[None, :]
    if off.any():
        g, b = np.nonzero(off)
        xg = X.reshape(G, 8, B)[g, :, b]
        wg = W.reshape(G, 8, B)[g, :, b]
        u = pack(L.reshape(G, 8, B)[g, :, b], 1)
        idx = idx.copy()
        idx[g, b] = nearest_neighbour2(lat, u, xg, wg, scale=scale[b], xx=xx[g, :, b])
    redo: Ints = np.asarray(off.any(axis=0))
    return np.where(ok[None, :], idx, 0), redo


def refit(lat: Lattice8, idx: Ints, X: Floats, W: Floats, xx: Floats) -> tuple[Floats, Floats]:
    """sumqx, sumq2 of the chosen grid points (G, B), valued `xx` (G, 3, B), in C order."""
    G, B = idx.shape
    lv = (lat.values[idx].astype(np.int64) - 1) // 2  # (G, B, 8)
    q = np.take_along_axis(xx, lv.transpose(0, 2, 1), axis=1).reshape(G * 8, B)
    wq = (W * q).astype(F32)
    return seq_sum((wq * X).astype(F32)), seq_sum((wq * q).astype(F32))


def snap_and_refit(
    lat: Lattice8, L: Ints, X: Floats, W: Floats, *, scale: Floats, xx: Floats, ok: Ints
) -> Ints:
    """`snap_groups`' grid indices of L; where a block had a group snapped, its `scale` is
    refitted in place to the chosen points (kept if the fit is not positive)."""
    idx, redo = snap_groups(lat, L, X, W, scale=scale, xx=xx, ok=ok)
    if redo.any():
        cols = np.flatnonzero(redo)
        sumqx, sumq2 = refit(
            lat, idx[:, cols], X[:, cols], W[:, cols], np.ascontiguousarray(xx[:, :, cols])
        )
        fit = (sumqx > 0) & (sumq2 > 0)
        scale[cols] = np.where(fit, safe_div(sumqx, sumq2), scale[cols])
    return idx


def _block_search(lat: Lattice8, X: Floats, W: Floats) -> tuple[Floats, Ints, Ints, Ints]:
    """Scale, shift (+-1), grid indices (4, B) and liveness of each 32-element column."""
    B = X.shape[1]
    live = np.abs(X).max(axis=0) >= _EPS
    perm, S, Sw = prefix_sums(X, W)
    qx, q2 = _candidates(S, Sw)
    win, scale = first_best(qx, q2)
    ok = live & (win >= 0)
    pair = np.maximum(win, 0) // 2
    shift = np.where(win % 2 == 0, 1, -1)
    L = split_levels(perm, _I1[pair], _I2[pair])
    neg = scale < 0
    L = np.where(neg[None, :], 2 - L, L)
    scale = np.where(neg, -scale, scale).astype(F32)
    shift = np.where(neg, -shift, shift)
    xx = np.where(shift[None, :] == 1, X_P[:, None], X_M[:, None]).astype(F32)  # (3, B)
    xg = np.broadcast_to(xx[None], (4, 3, B))
    idx = snap_and_refit(lat, L, X, W, scale=scale, xx=xg, ok=ok)
    scale = np.where(ok, scale, F32(0.0)).astype(F32)
    return scale, np.where(ok, shift, 1), idx, ok


def quantize_iq1_s(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 50) IQ1_S blocks."""
    if qw is None:
        raise QuantError(
            "IQ1_S needs an importance matrix (missing quantization weights)",
            hint="pass --imatrix FILE (made with llama-imatrix)",
        )
    lat = iq1_lattice()
    nb = x.shape[0]
    X = element_major(x, _N)  # block b of super-block s is column 8*s + b
    sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
    sigma2 = (F32(2.0) * sumx2 / F32(256.0)).astype(F32)
    sig = np.repeat(sigma2, 8)[None, :]
    W = (element_major(qw, _N) * np.sqrt((sig + (X * X).astype(F32)).astype(F32))).astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    shift = np.empty(B, dtype=np.int64)
    idx = np.empty((4, B), dtype=np.int64)
    for sl in column_slices(64, B):  # 1024 blocks: the candidates stay in cache
        scale[sl], shift[sl], idx[:, sl], _ = _block_search(
            lat, np.ascontiguousarray(X[:, sl]), np.ascontiguousarray(W[:, sl])
        )
    out = np.zeros((nb, 50), dtype=np.uint8)
    g = idx.reshape(4, nb, 8).transpose(1, 2, 0)  # (nb, block, group)
    out[:, 2:34] = (g & 255).reshape(nb, 32).astype(np.uint8)
    qh = ((g >> 8) << (3 * np.arange(4))).sum(axis=2)  # (nb, 8)
    scales = scale.reshape(nb, 8)
    max_scale = scales.max(axis=1)
    d = (max_scale / F32(15.0)).astype(F32)
    ok = max_scale != 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        idv = np.where(ok, F32(1.0) / d, F32(0.0)).astype(F32)
        v = (F32(0.5) * ((idv[:, None] * scales).astype(F32) - F32(1.0))).astype(F32)
    ls = np.clip(nearest_int(v), 0, 7) | np.where(shift.reshape(nb, 8) == -1, 8, 0)
    qh |= np.where(ok[:, None], ls << 12, 0)
    out[:, 34:50] = qh.astype("<u2").view(np.uint8).reshape(nb, 16)
    out[:, 0:2] = fp16_bytes(np.where(ok, (d * F32(1.125)).astype(F32), F32(0.0)))
    return out


def dequantize_iq1_s(b: Bytes) -> Floats:
    lat = iq1_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])  # (nb, 1)
    qs = b[:, 2:34].astype(np.int32).reshape(nb, 8, 4)
    qh = np.ascontiguousarray(b[:, 34:50]).view("<u2").astype(np.int32)  # (nb, 8)
    dl = (d * (2 * ((qh >> 12) & 7) + 1).astype(F32)).astype(F32)  # (nb, 8)
    delta = np.where(qh & 0x8000, -DELTA, DELTA).astype(F32)
    grid = qs | (((qh[:, :, None] >> (3 * np.arange(4))) & 7) << 8)  # (nb, 8, 4)
    vals = ((lat.values[grid].astype(np.int32) - 3) // 2).astype(F32)  # (nb, 8, 4, 8)
    out: Floats = (dl[:, :, None, None] * (vals + delta[:, :, None, None]).astype(F32)).astype(F32)
    return out.reshape(nb, 256)
