"""The searches IQ1_S and IQ1_M share (`quantize_row_iq1_{s,m}_impl`): the exhaustive split
of a block's sorted values into the three levels -1, 0, +1 (shifted by +-delta), and the
weighted nearest lattice point of a group off the 2048-point lattice.

C tries every candidate (split, shift) in a fixed order and keeps one when
`sumqx*sumqx > best*sumq2`. Only candidates whose score sumqx^2/sumq2 is within a relative
1e-3 of the block's best can be the last one kept (any earlier winner is overtaken by the
best one, any later one cannot beat it), so the float32 scan of C is replayed exactly on
those few only, for all blocks at once.
"""

from __future__ import annotations

import numpy as np

from quant.lattice8 import Lattice8, nearest
from quant.numerics import F32, Floats, Ints

_NEAR = F32(1.0 - 1e-3)
_FLT_MAX = F32(np.finfo(np.float32).max)
_SMALL = 32  # candidates replayed per block in the common pass


def _replay(qx: Floats, q2: Floats) -> tuple[Ints, Floats]:
    """C's scan over the rows of (K, B) candidates (padding has q2 = 0): the row of the last
    candidate kept, -1 if none, and its `sumqx/sumq2`."""
    K, B = qx.shape
    best = np.full(B, -_FLT_MAX, dtype=F32)
    scale = np.zeros(B, dtype=F32)
    win = np.full(B, -1, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(K):
            a, b = qx[k], q2[k]
            upd = (b > 0) & ((a * a).astype(F32) > (best * b).astype(F32))
            if upd.any():
                s = np.divide(a, b, dtype=F32)
                scale = np.where(upd, s, scale)
                best = np.where(upd, (s * a).astype(F32), best)
                win = np.where(upd, k, win)
    return win, scale


def first_best(qx: Floats, q2: Floats) -> tuple[Ints, Floats]:
    """The candidate (row of `qx`, `q2`, in C's order) C keeps for each column, -1 when
    none has `sumq2 > 0`, and its scale `sumqx/sumq2`."""
    B = qx.shape[1]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        valid = q2 > 0
        score = np.where(valid, (np.divide(qx, q2, dtype=F32) * qx).astype(F32), -np.inf)
        top = score.max(axis=0)
        near = valid & (score >= (top * _NEAR).astype(F32))
    win = np.full(B, -1, dtype=np.int64)
    scale = np.zeros(B, dtype=F32)
    cols, rows = np.nonzero(near.T)  # by column, then candidate order
    counts = np.bincount(cols, minlength=B)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(cols.size) - starts[cols]
    for small in (True, False):
        pick = counts <= _SMALL if small else counts > _SMALL
        pick &= counts > 0
        if not pick.any():
            continue
        sel = np.flatnonzero(pick)
        K = int(counts[sel].max())
        slot = np.full(B, -1, dtype=np.int64)
        slot[sel] = np.arange(sel.size)
        keep = pick[cols]
        c, r, k = cols[keep], rows[keep], rank[keep]
        pqx = np.zeros((K, sel.size), dtype=F32)
        pq2 = np.zeros((K, sel.size), dtype=F32)
        pidx = np.zeros((K, sel.size), dtype=np.int64)
        pqx[k, slot[c]] = qx[r, c]
        pq2[k, slot[c]] = q2[r, c]
        pidx[k, slot[c]] = r
        w, s = _replay(pqx, pq2)
        win[sel] = np.where(w >= 0, pidx[np.maximum(w, 0), np.arange(sel.size)], -1)
        scale[sel] = s
    return win, scale


def nearest_neighbour2(
    lat: Lattice8, u: Ints, xg: Floats, wg: Floats, *, scale: Floats, xx: Floats
) -> Ints:
    """`iq1_find_best_neighbour2` for groups (G, 8) off the lattice: the grid index of the
    neighbour of tuple u nearest to x in the weight `wg`, its levels valued `xx` (G, 3)
    times `scale` (first of equals)."""
    q = np.concatenate([xx, np.full((xx.shape[0], 1), np.inf, dtype=F32)], axis=1)
    with np.errstate(invalid="ignore", over="ignore"):
        sq = (scale[:, None] * q).astype(F32)  # (G, 4)
        diff = (sq[:, None, :] - xg[:, :, None]).astype(F32)  # (G, 8, 4)
        terms = ((wg[:, :, None] * diff).astype(F32) * diff).astype(F32).reshape(-1)
    return nearest(lat, u, terms)


def split_levels(perm: Ints, i1: Ints, i2: Ints) -> Ints:
    """Levels (n, B) of a split: the values sorted by `perm` (n, B) get 0 before position
    i1, 1 before i2 and 2 after (`L[idx[j]]`)."""
    n = perm.shape[0]
    j = np.arange(n)[:, None]
    sorted_levels = (j >= i1[None, :]).astype(np.int64) + (j >= i2[None, :])
    L = np.empty_like(sorted_levels)
    np.put_along_axis(L, perm, sorted_levels, axis=0)
    return L
