"""IQ3_S: 256-element super-blocks of eight 32-element blocks; each group of four
magnitudes is a point of a 512-point lattice (`quant.lattice`), signs are kept as bits,
and each block has a 4-bit scale (`quantize_row_iq3_s_impl`, block size 32).

Per block, 19 trial scales are tried; a group whose rounded levels are off the lattice
takes its best neighbour (weighted by the square root of the importance). Blocks are
columns of element-major arrays (`X[i, b]`), sums in C order.
"""

from __future__ import annotations

import numpy as np

from quant.kpack import half
from quant.lattice import Lattice, iq3s_lattice
from quant.lattice_search import (
    BestTrial,
    candidate_runs,
    level_terms,
    odd_level_sums,
    round_levels,
    sign_bytes,
)
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    Ints,
    column_slices,
    element_major,
    first_minimum,
    packed_scale_nibbles,
    safe_div,
    seq_sum,
)

_KMAXQ = 8
_SHIFTS = 3 * np.arange(4)


def _levels(idv: Floats, xval: Floats) -> Ints:
    """Levels 0..7 of (32, B) magnitudes, as (8, 4, B)."""
    return round_levels(idv, xval, _KMAXQ).reshape(8, 4, -1)


def _neighbour(lat: Lattice, u: Ints, xg: Floats, wg: Floats, scale: Floats) -> Ints:
    """`iq3_find_best_neighbour` for groups off the lattice: levels (G, 4) of the grid
    point nearest to x/scale in the weighted sense (first of equals).

    Each term `w*diff*diff` depends on one coordinate's level only, so the 8 possible
    terms per coordinate are computed once per group; a candidate's distance is the
    float sum of its four terms in C order. The candidates of all groups are one flat
    list, their terms gathered as (4, n) rows, reduced per group."""
    terms = level_terms(scale, xg, wg, _KMAXQ)
    counts, starts, at = candidate_runs(lat.count, lat.start, u)
    idx = np.take(lat.flat_levels8, at, axis=1)  # (4, n)
    idx += np.repeat(np.arange(0, u.size * 32, 32, dtype=np.int32), counts)
    # C-contiguous (4, n): numpy adds row after row (n == 1 may not, but then there is a
    # single candidate)
    d2 = np.add.reduce(np.take(terms, idx), axis=0)
    first = first_minimum(d2, starts)
    best = lat.flat[at[first]]
    levels: Ints = (lat.values[best].astype(np.int32) - 1) // 2
    return levels


def _snap(
    lat: Lattice, L: Ints, xval: Floats, waux: Floats, scale: Floats, *, which: Ints | None = None
) -> Ints:
    """Levels (8, 4, B) with every off-lattice group (among `which`) replaced by its best
    neighbour."""
    u = (L << _SHIFTS[None, :, None]).sum(axis=1)  # (8, B)
    off = lat.index[u] < 0
    if which is not None:
        off &= which
    if off.any():
        g, b = np.nonzero(off)
        xg = xval.reshape(8, 4, -1)[g, :, b]
        wg = waux.reshape(8, 4, -1)[g, :, b]
        L = L.copy()
        L[g, :, b] = _neighbour(lat, u[g, b], xg, wg, scale[b])
    return L


def _fit(W: Floats, xval: Floats, L: Ints) -> tuple[Floats, Floats]:
    return odd_level_sums(W, xval, L.reshape(32, -1))


def block_search(
    lat: Lattice,
    xval: Floats,
    W: Floats,
    live: Ints,
    *,
    trials: int = 9,
    off_grid_only: bool = False,
) -> tuple[Floats, Ints]:
    """Scale (0 where not `live`) and levels (8, 4, B) of each 32-element column of
    magnitudes `xval`, trying 2*trials+1 scales. IQ3_S (the default) re-snaps every group
    at the final scale when one was off the lattice; IQ3_XXS (`off_grid_only`) only the
    groups that were."""
    waux = np.sqrt(W).astype(F32)
    mx1 = np.where(live, xval.max(axis=0), F32(1.0)).astype(F32)
    B = xval.shape[1]
    scale = (mx1 / F32(2 * _KMAXQ - 1)).astype(F32)
    trial = BestTrial(
        scale, np.zeros((8, 4, B), dtype=np.int64), np.full((8, B), off_grid_only, dtype=bool)
    )
    for step in range(-trials, trials + 1):
        with np.errstate(over="ignore", divide="ignore"):
            idv = ((F32(2 * _KMAXQ - 1) + F32(step) * F32(0.2)) / mx1).astype(F32)
            this_scale = (F32(1.0) / idv).astype(F32)
        La = _levels(idv, xval)
        u = (La << _SHIFTS[None, :, None]).sum(axis=1)
        aux_on = lat.index[u] >= 0
        La = _snap(lat, La, xval, waux, this_scale)
        trial.offer(La, aux_on, *_fit(W, xval, La))
    scale, L, on_grid = trial.scale, trial.L, trial.on_grid
    redo = (~on_grid).any(axis=0) & (scale > 0) & live
    if redo.any():
        cols = np.flatnonzero(redo)
        s = scale[cols]
        Xv, Wv, Wa = xval[:, cols], W[:, cols], waux[:, cols]
        with np.errstate(divide="ignore", over="ignore"):
            idv = (F32(1.0) / s).astype(F32)
        Lr = _levels(idv, Xv)
        which = None
        if off_grid_only:
            which = ~on_grid[:, cols]
            Lr = np.where(which[:, None, :], Lr, L[:, :, cols])
        Lr = _snap(lat, Lr, Xv, Wa, s, which=which)
        L[:, :, cols] = Lr
        sumqx, sumq2 = _fit(Wv, Xv, Lr)
        scale[cols] = np.where(sumq2 > 0, safe_div(sumqx, sumq2), s)
    L[:, :, ~live] = 0
    return np.where(live, scale, F32(0.0)).astype(F32), L


def quantize_iq3_s(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 110) IQ3_S blocks."""
    lat = iq3s_lattice()
    nb = x.shape[0]
    X = element_major(x, 32)  # block b of super-block s is column 8*s + b
    sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
    sigma2 = (F32(2.0) * sumx2 / F32(256.0)).astype(F32)
    if qw is None:
        W = (X * X).astype(F32)
    else:
        Q = element_major(qw, 32)
        sig = np.repeat(sigma2, 8)[None, :]
        W = (Q * np.sqrt((sig + (X * X).astype(F32)).astype(F32))).astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    L = np.empty((8, 4, B), dtype=np.int64)
    mx = np.empty(B, dtype=F32)
    for sl in column_slices(32, B):
        xval = np.abs(X[:, sl])
        mx[sl] = xval.max(axis=0)
        scale[sl], L[:, :, sl] = block_search(
            lat, xval, np.ascontiguousarray(W[:, sl]), mx[sl] != 0
        )
    signs, scale = sign_bytes(X, scale)  # (4, B)
    grid = lat.index[(L << _SHIFTS[None, :, None]).sum(axis=1)]  # (8, B)
    live = (mx != 0).reshape(nb, 8)
    out = np.zeros((nb, 110), dtype=np.uint8)
    # a block whose values are all zero is skipped without advancing the qs and signs
    # pointers, so the next block's bytes go where its would have gone
    rank = np.cumsum(live, axis=1) - 1
    s_idx, b_idx = np.nonzero(live)
    col = s_idx * 8 + b_idx
    r = rank[s_idx, b_idx]
    qs_at = 2 + 8 * r[:, None] + np.arange(8)
    out[s_idx[:, None], qs_at] = (grid[:, col].T & 255).astype(np.uint8)
    sg_at = 2 + 64 + 8 + 4 * r[:, None] + np.arange(4)
    out[s_idx[:, None], sg_at] = signs[:, col].T
    hi = ((grid >> 8) & 1).astype(np.uint8)  # (8, B)
    qh = np.packbits(hi, axis=0, bitorder="little").reshape(B)
    out[:, 66:74] = np.where(live, qh.reshape(nb, 8), 0)
    scales = np.where(live, scale.reshape(nb, 8), F32(0.0)).astype(F32)
    out[:, 0:2], out[:, 106:110] = packed_scale_nibbles(scales, F32(1.033))
    return out


def dequantize_iq3_s(b: Bytes) -> Floats:
    lat = iq3s_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])  # (nb, 1)
    qs = b[:, 2:66].astype(np.int32)
    qh = b[:, 66:74].astype(np.int32)
    signs = b[:, 74:106]
    sc = b[:, 106:110].astype(np.int32)
    nib = np.stack([sc & 15, sc >> 4], axis=2).reshape(nb, 8)
    db = (d * (1 + 2 * nib).astype(F32)).astype(F32)  # (nb, 8)
    hi = np.unpackbits(qh.astype(np.uint8)[:, :, None], axis=2, bitorder="little")
    grid = qs.reshape(nb, 8, 8) | (hi.astype(np.int32) << 8)  # (nb, block, group)
    vals = lat.values[grid].astype(F32).reshape(nb, 8, 32)  # magnitudes per element
    neg = np.unpackbits(signs.reshape(nb, 8, 4)[:, :, :, None], axis=3, bitorder="little").reshape(
        nb, 8, 32
    )
    sgn = np.where(neg == 1, F32(-1.0), F32(1.0))
    out: Floats = ((db[:, :, None] * vals).astype(F32) * sgn).astype(F32)
    return out.reshape(nb, 256)
