"""IQ2_S: 256-element super-blocks of sixteen 16-element blocks; each group of eight
magnitudes is a point of a 1024-point lattice (`quant.lattice8`), signs are kept as bits,
and each block has a 4-bit scale (`quantize_row_iq2_s_impl`).

Per block, 19 trial scales are tried; a group whose rounded levels are off the lattice
takes its nearest neighbour (weighted by the square root of the importance). Blocks are
columns of element-major arrays (`X[i, b]`), sums in C order.
"""

from __future__ import annotations

import numpy as np

from quant.kpack import half
from quant.lattice8 import Lattice8, iq2s_lattice, nearest, pack
from quant.lattice8_grids import DEQUANT_LEVELS
from quant.lattice_search import (
    BestTrial,
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
    packed_scale_nibbles,
    safe_div,
    seq_sum,
)

_KMAXQ = 3
_EPS = F32(1e-8)  # GROUP_MAX_EPS_IQ2_S
_MAGNITUDES = np.array(DEQUANT_LEVELS, dtype=F32)  # the same levels as IQ2_XXS/IQ2_XS


def _levels(idv: Floats, xval: Floats) -> Ints:
    """Levels 0..2 of (16, B) magnitudes, as (2, 8, B)."""
    return round_levels(idv, xval, _KMAXQ).reshape(2, 8, -1)


def nearest_neighbour(lat: Lattice8, u: Ints, xg: Floats, wg: Floats, scale: Floats) -> Ints:
    """`iq2_find_best_neighbour` for groups off the lattice: levels (G, 8) of the grid point
    nearest to x/scale in the weighted sense (first of equals).

    Each term `w*diff*diff` depends on one coordinate's level only, so the 4 possible
    terms per coordinate are computed once per group; a candidate's distance is the float
    sum of its eight terms in C order (`quant.lattice8.nearest`)."""
    terms = level_terms(scale, xg, wg, 4)  # the lattice's four levels per coordinate
    best = nearest(lat, u, terms)
    levels: Ints = (lat.values[best].astype(np.int64) - 1) // 2
    return levels


def _snap(
    lat: Lattice8, L: Ints, xval: Floats, waux: Floats, scale: Floats, *, which: Ints | None = None
) -> tuple[Ints, Ints]:
    """Levels (2, 8, B) with the off-lattice groups (among `which`, when given) replaced by
    their nearest neighbour, and whether each group was on the lattice."""
    on = lat.index[pack(L, 1)] >= 0  # (2, B)
    fix = ~on if which is None else ~on & which
    if fix.any():
        g, b = np.nonzero(fix)
        xg = xval.reshape(2, 8, -1)[g, :, b]
        wg = waux.reshape(2, 8, -1)[g, :, b]
        L = L.copy()
        L[g, :, b] = nearest_neighbour(lat, pack(L[g, :, b], 1), xg, wg, scale[b])
    return L, on


def _fit(W: Floats, xval: Floats, L: Ints) -> tuple[Floats, Floats]:
    return odd_level_sums(W, xval, L.reshape(16, -1))


def _block_search(lat: Lattice8, X: Floats, W: Floats) -> tuple[Floats, Ints, Floats]:
    """Scale, levels (2, 8, B) and block maxima of each 16-element column."""
    xval = np.abs(X)
    waux = np.sqrt(W).astype(F32)
    mx = xval.max(axis=0)
    live = mx >= _EPS
    mx1 = np.where(live, mx, F32(1.0)).astype(F32)
    B = X.shape[1]
    scale = (mx1 / F32(2 * _KMAXQ - 1)).astype(F32)
    trial = BestTrial(scale, np.zeros((2, 8, B), dtype=np.int64), np.ones((2, B), dtype=bool))
    for step in range(-9, 10):
        with np.errstate(over="ignore", divide="ignore"):
            idv = ((F32(2 * _KMAXQ - 1) + F32(step) * F32(0.1)) / mx1).astype(F32)
            this_scale = (F32(1.0) / idv).astype(F32)
        La, aux_on = _snap(lat, _levels(idv, xval), xval, waux, this_scale)
        trial.offer(La, aux_on, *_fit(W, xval, La))
    scale, L, on_grid = trial.scale, trial.L, trial.on_grid
    redo = (~on_grid).any(axis=0) & (scale > 0) & live
    if redo.any():
        cols = np.flatnonzero(redo)
        s = scale[cols]
        Xv, Wv, Wa = xval[:, cols], W[:, cols], waux[:, cols]
        with np.errstate(divide="ignore", over="ignore"):
            idv = (F32(1.0) / s).astype(F32)
        off = ~on_grid[:, cols]
        # only the groups that were off the lattice are rounded again
        Lr = np.where(off[:, None, :], _levels(idv, Xv), L[:, :, cols])
        Lr, _ = _snap(lat, Lr, Xv, Wa, s, which=off)
        L[:, :, cols] = Lr
        sumqx, sumq2 = _fit(Wv, Xv, Lr)
        scale[cols] = np.where(sumq2 > 0, safe_div(sumqx, sumq2), s)
    return np.where(live, scale, F32(0.0)).astype(F32), L, mx


def quantize_iq2_s(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 82) IQ2_S blocks."""
    lat = iq2s_lattice()
    nb = x.shape[0]
    X = element_major(x, 16)  # block b of super-block s is column 16*s + b
    sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
    sigma2 = (F32(2.0) * sumx2 / F32(256.0)).astype(F32)
    sig = np.repeat(sigma2, 16)[None, :]
    XX = (X * X).astype(F32)
    if qw is None:
        W = ((F32(0.25) * sig).astype(F32) + XX).astype(F32)
    else:
        Q = element_major(qw, 16)
        W = (Q * np.sqrt((sig + XX).astype(F32))).astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    L = np.empty((2, 8, B), dtype=np.int64)
    mx = np.empty(B, dtype=F32)
    for sl in column_slices(16, B):
        scale[sl], L[:, :, sl], mx[sl] = _block_search(
            lat, np.ascontiguousarray(X[:, sl]), np.ascontiguousarray(W[:, sl])
        )
    signs, scale = sign_bytes(X, scale)  # (2, B)
    live = mx >= _EPS
    grid = np.where(live[None, :], lat.index[pack(L, 1)], 0)  # (2, B)
    signs = np.where(live[None, :], signs, 0).astype(np.uint8)
    # group k of block ib is byte 2*ib + k of qs, of the signs, and bits 2*(i8%4) of qh
    g = grid.reshape(2, nb, 16).transpose(1, 2, 0).reshape(nb, 32)
    out = np.zeros((nb, 82), dtype=np.uint8)
    out[:, 2:34] = (g & 255).astype(np.uint8)
    out[:, 34:66] = signs.reshape(2, nb, 16).transpose(1, 2, 0).reshape(nb, 32)
    hi = (g >> 8).reshape(nb, 8, 4) << (2 * np.arange(4))
    out[:, 66:74] = hi.sum(axis=2).astype(np.uint8)
    scales = np.where(live, scale, F32(0.0)).astype(F32).reshape(nb, 16)
    out[:, 0:2], out[:, 74:82] = packed_scale_nibbles(scales, F32(0.9875))
    return out


def dequantize_iq2_s(b: Bytes) -> Floats:
    lat = iq2s_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])  # (nb, 1)
    qs = b[:, 2:34].astype(np.int32)
    qh = b[:, 66:74].astype(np.int32)
    signs = b[:, 34:66]
    sc = b[:, 74:82].astype(np.int32)
    nib = np.stack([sc & 15, sc >> 4], axis=2).reshape(nb, 16)
    # dequantize_row_iq2_s: d * (0.5f + scale) * 0.25f per block
    db = ((d * (F32(0.5) + nib.astype(F32))).astype(F32) * F32(0.25)).astype(F32)
    hi = (qh[:, :, None] >> (2 * np.arange(4))) & 3  # (nb, 8, 4)
    grid = qs | (hi.reshape(nb, 32) << 8)  # (nb, group)
    # iq2s_grid spells the levels 0, 1, 2 as the magnitudes 8, 25, 43
    lv = (lat.values[grid].astype(np.int64) - 1) // 2
    vals = _MAGNITUDES[lv].reshape(nb, 16, 16)
    neg = np.unpackbits(signs[:, :, None], axis=2, bitorder="little").reshape(nb, 16, 16)
    sgn = np.where(neg == 1, F32(-1.0), F32(1.0))
    out: Floats = ((db[:, :, None] * vals).astype(F32) * sgn).astype(F32)
    return out.reshape(nb, 256)
