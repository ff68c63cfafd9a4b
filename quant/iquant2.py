"""IQ2_XXS and IQ2_XS: 256-element super-blocks whose groups of eight magnitudes are points
of an 8-coordinate 2-bit lattice (`quant.lattice2`), with seven sign bits per group (the
eighth is implied by even parity) and a 4-bit scale per block (`quantize_row_iq2_xxs_impl`,
blocks of 32; `quantize_row_iq2_xs_impl`, blocks of 16). Both require importance weights.

Blocks are columns of element-major arrays (`X[i, b]`), sums in C order; a group is eight
consecutive rows.
"""

from __future__ import annotations

import numpy as np

from quant.errors import QuantError
from quant.kpack import half
from quant.lattice2 import (
    Lattice2,
    best_neighbour,
    grid_levels,
    group_keys,
    iq2xs_lattice,
    iq2xxs_lattice,
)
from quant.lattice8_grids import DEQUANT_LEVELS
from quant.lattice_search import BestTrial, odd_level_sums, round_levels
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
    scale_nibbles,
    seq_sum,
)

_KMAXQ = 3
_EPS = F32(1e-15)
_MAGNITUDE = np.array(DEQUANT_LEVELS, dtype=F32)


def parity_signs(X: Floats, W: Floats) -> tuple[Floats, Bytes]:
    """Magnitudes and 7-bit signs of each group of 8 rows of X (n, B), as ggml makes them:
    a group with an odd number of negatives keeps the sign of its least important element
    (smallest w*x*x, first of equals), whose magnitude is negated instead."""
    n, B = X.shape
    neg = X < 0
    xval = np.where(neg, -X, X).astype(F32)
    g = n // 8
    ax = ((W * X).astype(F32) * X).astype(F32).reshape(g, 8, B)
    odd = (neg.reshape(g, 8, B).sum(axis=1) & 1) == 1  # (g, B)
    flip = odd[:, None, :] & (np.arange(8)[None, :, None] == np.argmin(ax, axis=1)[:, None, :])
    xval = np.where(flip.reshape(n, B), -xval, xval).astype(F32)
    bits = neg.reshape(g, 8, B) ^ flip
    signs = np.packbits(bits, axis=1, bitorder="little").reshape(g, B) & 127
    return xval, signs.astype(np.uint8)


def ksigns(bits7: Ints) -> Ints:
    """`ksigns_iq2xs`: seven sign bits with the eighth making the parity even."""
    b = bits7.astype(np.uint8)
    out: Ints = b | ((np.bitwise_count(b) & 1) << 7).astype(np.uint8)
    return out


def _qp_scale(x: Floats, w: Floats) -> Floats:
    """The scale `make_qp_quants(32, 4, x, L, w)` returns, per column of x (32, B).

    Its levels are uint8, so a negative level wraps to 256-k in the refinement passes,
    as in C; converged columns drop out (another pass would not change them)."""
    nmax = F32(4)
    with np.errstate(all="ignore"):
        mx = np.maximum.reduce(x, axis=0, initial=F32(0.0))
        iscale = (nmax / mx).astype(F32)
        L = nearest_int((iscale * x).astype(F32)) & 255
        scale = (F32(1.0) / iscale).astype(F32)

        def mse(s: Floats, lv: Ints) -> Floats:
            diff = (x - (s * lv.astype(F32)).astype(F32)).astype(F32)
            return seq_sum(((w * diff).astype(F32) * diff).astype(F32))

        best = mse(scale, L)
        for step in (-4, -3, -2, -1, 1, 2, 3, 4):
            isc = ((F32(0.1) * F32(step) + nmax) / mx).astype(F32)
            lv = np.minimum(4, nearest_int((isc * x).astype(F32)))
            m = mse((F32(1.0) / isc).astype(F32), lv)
            better = m < best
            best = np.where(better, m, best).astype(F32)
            iscale = np.where(better, isc, iscale).astype(F32)
        lv = np.minimum(4, nearest_int((iscale * x).astype(F32)))
        wx = (w * x).astype(F32)
        lf = lv.astype(F32)
        sumlx = seq_sum((wx * lf).astype(F32))
        suml2 = seq_sum(((w * lf).astype(F32) * lf).astype(F32))
        L = lv & 255
        cols = np.arange(x.shape[1])
        for _ in range(5):
            if cols.size == 0:
                break
            changed = np.zeros(cols.size, dtype=bool)
            sx, s2 = sumlx[cols], suml2[cols]
            for i in range(x.shape[0]):
                wi, xi, wxi = w[i, cols], x[i, cols], wx[i, cols]
                li = L[i, cols]
                lif = li.astype(F32)
                slx = (sx - (wxi * lif).astype(F32)).astype(F32)
                sl2 = (s2 - ((wi * lif).astype(F32) * lif).astype(F32)).astype(F32)
                ok = (slx > 0) & (sl2 > 0)
                new = np.minimum(4, nearest_int(((xi * sl2).astype(F32) / slx).astype(F32)))
                ok &= new != li
                nf = new.astype(F32)
                slx = (slx + (wxi * nf).astype(F32)).astype(F32)
                sl2 = (sl2 + ((wi * nf).astype(F32) * nf).astype(F32)).astype(F32)
                lhs = ((slx * slx).astype(F32) * s2).astype(F32)
                rhs = ((sx * sx).astype(F32) * sl2).astype(F32)
                ok &= lhs > rhs
                if ok.any():
                    L[i, cols] = np.where(ok, new & 255, li)
                    sx = np.where(ok, slx, sx).astype(F32)
                    s2 = np.where(ok, sl2, s2).astype(F32)
                    changed |= ok
            sumlx[cols], suml2[cols] = sx, s2
            cols = cols[changed]
        return np.where(suml2 > 0, safe_div(sumlx, suml2), F32(0.0)).astype(F32)


def _levels(idv: Floats, xval: Floats) -> Ints:
    """Levels 0..2 of (n, B) magnitudes, as (8, n/8, B)."""
    L = round_levels(idv, xval, _KMAXQ)
    return np.moveaxis(L.reshape(-1, 8, L.shape[-1]), 1, 0)


def _snap(
    lat: Lattice2, L: Ints, xval: Floats, waux: Floats, scale: Floats, *, which: Ints | None = None
) -> tuple[Ints, Ints]:
    """Levels (8, G, B) with every off-lattice group (among `which`) replaced by its best
    neighbour, and whether each group was on the lattice."""
    on = lat.index[group_keys(L)] >= 0  # (G, B)
    off = ~on if which is None else ~on & which
    if off.any():
        g, b = np.nonzero(off)
        xg = xval.reshape(-1, 8, xval.shape[-1])[g, :, b]
        wg = waux.reshape(-1, 8, waux.shape[-1])[g, :, b]
        best = best_neighbour(lat, group_keys(L)[g, b], xg, wg, scale[b])
        L = L.copy()
        L[:, g, b] = grid_levels(lat, best)
    return L, on


def _fit(W: Floats, xval: Floats, L: Ints) -> tuple[Floats, Floats]:
    return odd_level_sums(W, xval, np.moveaxis(L, 0, 1).reshape(W.shape))


def _search(lat: Lattice2, xval: Floats, W: Floats, xxs: bool) -> tuple[Floats, Ints, Ints]:
    """Scale (B,) and levels (8, G, B) of each column, and which columns are not left
    empty (all levels and signs 0, scale 0)."""
    n, B = xval.shape
    waux = np.sqrt(W).astype(F32)
    mx = xval.max(axis=0)
    live = mx >= _EPS
    mx1 = np.where(live, mx, F32(1.0)).astype(F32)
    if xxs:
        scale = _qp_scale(xval, W)
        base = (scale * F32(_KMAXQ)).astype(F32)  # eff_max
        live &= base > 0
        base = np.where(live, base, F32(1.0)).astype(F32)
        trials, step = 6, F32(0.1)
    else:
        base = mx1
        scale = (mx1 / F32(2 * _KMAXQ - 1)).astype(F32)
        trials, step = 9, F32(0.1)
    trial = BestTrial(
        scale, np.zeros((8, n // 8, B), dtype=np.int64), np.ones((n // 8, B), dtype=bool)
    )
    for k in range(-trials, trials + 1):
        with np.errstate(over="ignore", divide="ignore"):
            idv = ((F32(2 * _KMAXQ - 1) + F32(k) * step) / base).astype(F32)
            this_scale = (F32(1.0) / idv).astype(F32)
        La, on = _snap(lat, _levels(idv, xval), xval, waux, this_scale)
        trial.offer(La, on, *_fit(W, xval, La))
    scale, L, on_grid = trial.scale, trial.L, trial.on_grid
    # IQ2_XXS re-snaps every group at the final scale, IQ2_XS only those off the lattice
    redo = (scale > 0) & live & (True if xxs else (~on_grid).any(axis=0))
    if redo.any():
        cols = np.flatnonzero(redo)
        s = scale[cols]
        xv, wv, wa = xval[:, cols], W[:, cols], waux[:, cols]
        with np.errstate(divide="ignore", over="ignore"):
            idv = (F32(1.0) / s).astype(F32)
        Lr = _levels(idv, xv)
        if not xxs:
            keep = on_grid[:, cols]
            Lr = np.where(keep[None], L[:, :, cols], Lr)
        Lr, _ = _snap(lat, Lr, xv, wa, s, which=None if xxs else ~on_grid[:, cols])
        L[:, :, cols] = Lr
        sumqx, sumq2 = _fit(wv, xv, Lr)
        scale[cols] = np.where(sumq2 > 0, safe_div(sumqx, sumq2), s)
    L[:, :, ~live] = 0
    return np.where(live, scale, F32(0.0)).astype(F32), L, live


def _blocks(
    x: Floats, qw: Floats | None, n: int, lat: Lattice2, xxs: bool
) -> tuple[Floats, Ints, Bytes]:
    """Per block of n: scale (B,), grid indices (G, B) and 7-bit signs (G, B) (zero for
    an empty block)."""
    if qw is None:
        raise QuantError(
            f"{'IQ2_XXS' if xxs else 'IQ2_XS'} needs an importance matrix: "
            "ggml cannot quantize to it without one"
        )
    X = element_major(x, n)
    sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
    sigma2 = (sumx2 / F32(256.0)).astype(F32)
    sig = np.repeat(sigma2, 256 // n)[None, :]
    W = (element_major(qw, n) * np.sqrt((sig + (X * X).astype(F32)).astype(F32))).astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    grid = np.empty((n // 8, B), dtype=np.int64)
    signs = np.empty((n // 8, B), dtype=np.uint8)
    for sl in column_slices(n, B):
        Xs, Ws = np.ascontiguousarray(X[:, sl]), np.ascontiguousarray(W[:, sl])
        xval, sg = parity_signs(Xs, Ws)
        s, L, live = _search(lat, xval, Ws, xxs)
        flip = s < 0
        sg[:, flip] = ~sg[:, flip] & 127
        sg[:, ~live] = 0
        scale[sl] = np.abs(s)
        grid[:, sl] = lat.index[group_keys(L)]
        signs[:, sl] = sg
    return scale, grid, signs


def quantize_iq2_xxs(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 66) IQ2_XXS blocks."""
    lat = iq2xxs_lattice()
    nb = x.shape[0]
    scale, grid, signs = _blocks(x, qw, 32, lat, True)
    d, ls, ok = scale_nibbles(scale.reshape(nb, 8))
    g = grid.astype(np.uint32).reshape(4, nb, 8)
    s = signs.astype(np.uint32).reshape(4, nb, 8)
    q2 = np.empty((nb, 8, 2), dtype="<u4")
    q2[:, :, 0] = g[0] | (g[1] << 8) | (g[2] << 16) | (g[3] << 24)
    q2[:, :, 1] = s[0] | (s[1] << 7) | (s[2] << 14) | (s[3] << 21) | (ls << 28)
    q2[~ok] = 0
    out = np.empty((nb, 66), dtype=np.uint8)
    out[:, 2:] = q2.view(np.uint8).reshape(nb, 64)
    out[:, 0:2] = fp16_bytes(np.where(ok, d, F32(0.0)))
    return out


def quantize_iq2_xs(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 74) IQ2_XS blocks."""
    lat = iq2xs_lattice()
    nb = x.shape[0]
    scale, grid, signs = _blocks(x, qw, 16, lat, False)
    d, ls, ok = scale_nibbles(scale.reshape(nb, 16))
    q2 = grid.astype(np.uint16) | (signs.astype(np.uint16) << 9)  # (2, B)
    q2 = np.ascontiguousarray(q2.reshape(2, nb, 16).transpose(1, 2, 0)).astype("<u2")
    q2[~ok] = 0
    out = np.empty((nb, 74), dtype=np.uint8)
    out[:, 2:66] = q2.view(np.uint8).reshape(nb, 64)
    out[:, 66:74] = np.where(ok[:, None], ls[:, 0::2] | (ls[:, 1::2] << 4), 0)
    out[:, 0:2] = fp16_bytes(np.where(ok, d, F32(0.0)))
    return out


def signed_values(db: Floats, vals: Floats, bits7: Ints) -> Floats:
    """`db * grid[j] * (sign bit j ? -1 : 1)` for (..., 8) values and 7-bit signs (...)."""
    s8 = ksigns(bits7)
    neg = np.unpackbits(s8[..., None], axis=-1, bitorder="little")
    v = (db[..., None] * vals).astype(F32)
    out: Floats = np.where(neg == 1, -v, v).astype(F32)
    return out


def dequantize_iq2_xxs(b: Bytes) -> Floats:
    lat = iq2xxs_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])  # (nb, 1)
    q2 = np.ascontiguousarray(b[:, 2:66]).view("<u4").reshape(nb, 8, 2)
    aux = q2[:, :, 1].astype(np.int64)
    db = ((d * (F32(0.5) + (aux >> 28).astype(F32))).astype(F32) * F32(0.25)).astype(F32)
    idx = np.ascontiguousarray(q2[:, :, 0]).view(np.uint8).reshape(nb, 8, 4)
    vals = _MAGNITUDE[lat.values[idx] // 2]  # (nb, 8, 4, 8)
    bits = (aux[:, :, None] >> (7 * np.arange(4))) & 127
    return signed_values(np.broadcast_to(db[:, :, None], bits.shape), vals, bits).reshape(nb, 256)


def dequantize_iq2_xs(b: Bytes) -> Floats:
    lat = iq2xs_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])
    qs = np.ascontiguousarray(b[:, 2:66]).view("<u2").reshape(nb, 16, 2).astype(np.int64)
    sc = b[:, 66:74].astype(np.int64)
    nib = np.stack([sc & 15, sc >> 4], axis=2).reshape(nb, 16)
    db = ((d * (F32(0.5) + nib.astype(F32))).astype(F32) * F32(0.25)).astype(F32)
    vals = _MAGNITUDE[lat.values[qs & 511] // 2]  # (nb, 16, 2, 8)
    bits = qs >> 9
    return signed_values(np.broadcast_to(db[:, :, None], bits.shape), vals, bits).reshape(nb, 256)
