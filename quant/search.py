"""ggml's scale searches (`make_q3_quants`, `make_qkx2/3_quants`, `make_qp_quants`;
`make_qx_quants` is in `qx_search`), vectorised over blocks.

Every function takes element-major blocks `X[i, b]` (see `numerics`) and returns per-block
scales and the integer levels `L` as float32, exactly as the C helpers leave them
(including `L = 0` for all-zero blocks). Python loops run over search steps, over the
elements of one block and over cache-sized slices of blocks, never over single blocks.
"""

from __future__ import annotations

import numpy as np

from quant.descent import descend
from quant.numerics import (
    F32,
    GROUP_MAX_EPS,
    Floats,
    column_slices,
    first_max,
    first_min,
    nearest_float,
    nearest_int,
    seq_dot,
    seq_dot_fused,
    seq_sum,
    seq_sum_first,
    signed_absmax,
)

#: the min/scale search does some thirty numpy calls on per-block rows per step, each with a
#: fixed cost: slices of 256K values (16K blocks of 16, 8K of 32) keep that share small
#: (Q2_K ~22%, Q4_K/Q5_K ~20% less CPU than 64K-value slices, although the Q2_K slice's
#: four 1 MB arrays then come from L3 rather than L2; 512K is no better on a busy machine)
QKX_SLICE_ELEMS = 1 << 18


def make_qkx_quants(  # noqa: PLR0917 (the C helper's parameters, in its order)
    X: Floats,
    W: Floats,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
    *,
    v3: bool = False,
) -> tuple[Floats, Floats, Floats]:
    """`make_qkx2_quants` (or `make_qkx3_quants` with `v3`): scale, the_min (>= 0), L in 0..nmax."""
    L = np.empty(X.shape, dtype=F32)
    scale, the_min = _qkx_search(X, W, (nmax, rmin, rdelta, nstep, use_mad, v3), L)
    return scale, the_min, L


def make_qkx_scales(  # noqa: PLR0917 (as make_qkx_quants)
    X: Floats,
    W: Floats,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
    *,
    v3: bool = False,
) -> tuple[Floats, Floats]:
    """The scales and mins of `make_qkx_quants` alone, for callers that re-derive the levels
    from the stored scales: the search's own levels are never built (`make_qkx_quants` on
    the few blocks that need them gives the same, the search being per block)."""
    return _qkx_search(X, W, (nmax, rmin, rdelta, nstep, use_mad, v3), None)


def _qkx_search(
    X: Floats, W: Floats, params: tuple[int, float, float, int, bool, bool], L: Floats | None
) -> tuple[Floats, Floats]:
    """The search over cache-sized slices of blocks; the levels into L if one is given."""
    n, B = X.shape
    scale = np.empty(B, dtype=F32)
    the_min = np.empty(B, dtype=F32)
    for s in column_slices(n, B, QKX_SLICE_ELEMS):
        scale[s], the_min[s] = _qkx_slice(
            X[:, s], np.ascontiguousarray(W[:, s]), *params, None if L is None else L[:, s]
        )
    return scale, the_min


def _qkx_slice(  # noqa: PLR0917 (C's loop, vectorised over blocks, in one place)
    X: Floats,
    W: Floats,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
    v3: bool,
    L: Floats | None,
) -> tuple[Floats, Floats]:
    """The search on the blocks of X (a view), W (C-ordered): scale and the_min, and the
    levels in L if one is given.

    Per step, 13 passes over the elements (levels 4, sums 4, error 5, or 4 if squared) and
    some thirty operations on per-block rows: element passes write preallocated arrays, and the
    per-block arithmetic runs on stacked rows, several of C's scalar operations per call.
    """
    n, B = X.shape
    # The levels and x side by side: one einsum call sums (w*l)*l and (w*l)*x.
    LX = np.empty((2, n, B), dtype=F32)
    La, Xc = LX[0], LX[1]
    Xc[...] = X
    WL = np.empty_like(Xc)  # w*l for the sums, then the error terms
    fused = seq_dot_fused(WL, La, Xc, W)
    xmin = first_min(Xc)
    mx = first_max(Xc)
    sum_w = seq_sum_first(W)
    np.multiply(W, Xc, out=WL)
    sum_x = seq_sum_first(WL)
    # Per-block rows: S = (sum w*l, sum w*l*l, sum w*l*x); Q = the six products of C's
    # D, scale and min numerators; N = (D, scale numerator, min numerator); C = this step's
    # isc, error, scale and min; K = what C keeps: best isc, its min, best error, scale, min.
    S, Q, N, C, K = (np.empty((k, B), dtype=F32) for k in (3, 6, 3, 4, 5))
    sl, sl2, sxl = S
    isc, cur, fit = C[0], C[1], C[2:]
    best_isc, best_mn, best, scale, mn = K
    np.copyto(mn, np.where(xmin > 0, F32(0.0), xmin))
    degs = np.flatnonzero((mx <= mn) if v3 else (mx == mn))
    den = np.empty(B, dtype=F32)
    upd = np.empty(B, dtype=bool)
    less = np.empty(B, dtype=bool)
    fnmax = F32(nmax)
    no_clamp_top = F32(nmax + 0.4)  # below this numerator, isc*(x - min) < nmax + 0.5

    def ranges(m: Floats, exact: bool, negative: bool) -> tuple[bool, bool]:
        # den = max - min (1 for degenerate blocks); exact: for every block isc*(x - min)
        # stays where np.rint equals nearest_int; negative: some min > its smallest x
        # (levels can be negative and need the lower clamp). Both flags only ever go the
        # safe way (the bit trick and the clamp are right for every block, only slower),
        # so once there they are not tested again.
        np.subtract(mx, m, out=den)
        den[degs] = 1
        if exact or not negative:
            gap = m - xmin
            gap[degs] = 0
        if exact:
            ok = den >= F32(1e-30)
            ok &= gap <= den * F32(1e5)
            ok[degs] = True
            exact = bool(ok.all())
        if not negative:
            negative = bool((gap > 0).any())
        return exact, negative

    def levels(isc: Floats, m: Floats, exact: bool, clamp: bool, out: Floats) -> None:
        # out = clamp(nearest_int(isc * (x - m)), 0, nmax)
        np.subtract(Xc, m, out=out)
        np.multiply(out, isc, out=out)
        if exact:
            np.rint(out, out=out)
        else:
            out[...] = nearest_float(out, exact=False)
        if clamp or not exact:
            np.clip(out, F32(0.0), fnmax, out=out)

    def sums() -> None:
        # sum w*l, sum (w*l)*l, sum (w*l)*x, each added in C's order
        np.multiply(W, La, out=WL)
        if fused:
            np.add.reduce(WL, axis=0, out=sl, initial=F32(0.0))
            np.einsum("ij,kij->kj", WL, LX, out=S[1:])
        else:
            seq_sum(WL, out=sl)
            seq_dot(WL, La, out=sl2)
            seq_dot(WL, Xc, out=sxl)

    def error(scale: Floats, the_min: Floats, out: Floats) -> None:
        # sum_i w * f(scale*L + min - x), f = |.| or square
        T = WL
        np.multiply(La, scale, out=T)
        np.add(T, the_min, out=T)
        np.subtract(T, Xc, out=T)
        if use_mad:
            np.abs(T, out=T)
            factors: tuple[Floats, ...] = (T, W)
        else:
            factors = (T, T, W)  # (d*d)*w = w*(d*d), C's product
        if fused:
            np.einsum(",".join(["ij"] * len(factors)) + "->j", *factors, out=out)
        else:
            seq_dot(*factors, out=out)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exact, negative = ranges(mn, True, False)
        np.divide(fnmax, den, out=best_isc)
        np.divide(F32(1.0), best_isc, out=scale)
        levels(best_isc, mn, exact, negative, La)
        error(scale, mn, best)
        best[degs] = -np.inf  # never replaced
        # The levels of a step are a function of (iscale, min) at that step: remember those
        # of the best step per block and rebuild L once at the end (if wanted).
        best_mn[...] = mn
        keep = 0 if L is not None else 2
        candidate = (isc, mn, cur, fit[0], fit[1])
        for step in range(nstep + 1):
            numer = F32(rmin) + F32(rdelta) * F32(step) + fnmax
            np.divide(numer, den, out=isc)
            levels(isc, mn, exact, negative or bool(numer > no_clamp_top), La)
            sums()
            # D = sum_w*sl2 - sl*sl, scale = (sum_w*sxl - sum_x*sl)/D and
            # min = (sl2*sum_x - sl*sxl)/D: Q's rows 0-2 minus rows 3-5 are N
            np.multiply(sum_w, S[1:], out=Q[0:2])
            np.multiply(sl2, sum_x, out=Q[2])
            np.multiply(sl, S[0::2], out=Q[3::2])
            np.multiply(sum_x, sl, out=Q[4])
            np.subtract(Q[:3], Q[3:], out=N)
            D = N[0]
            np.divide(N[1:], D, out=fit)
            this_scale, this_min = fit
            np.greater(this_min, 0, out=upd)
            if upd.any():  # (a few blocks in a slice)
                pos = np.flatnonzero(upd)
                this_min[pos] = 0
                this_scale[pos] = sxl[pos] / sl2[pos]
            error(this_scale, this_min, cur)
            np.greater(D, 0, out=upd)
            np.less(cur, best, out=less)
            upd &= less
            if not upd.any():
                continue
            u = np.flatnonzero(upd)
            for kept, new in zip(K[keep:], candidate[keep:], strict=True):
                kept[u] = new[u]  # (best_mn before mn)
            exact, negative = ranges(mn, exact, negative)
        if L is not None:
            exact, _ = ranges(best_mn, True, True)
            levels(best_isc, best_mn, exact, True, L)
            L[:, degs] = 0
    scale[degs] = 0
    return scale, -mn


def make_q3_quants(X: Floats, nmax: int) -> tuple[Floats, Floats]:
    """`make_q3_quants(n, nmax, x, L, do_rmse=true)`: scale and L in 0..2*nmax-1."""
    mx, amax = signed_absmax(X)
    zero = amax < GROUP_MAX_EPS
    fnmax = F32(nmax)
    mx = np.where(zero, F32(1.0), mx).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # |x * iscale| <= nmax: np.rint is exact
        L = np.rint(X * (-fnmax / mx).astype(F32))
        np.clip(L, -fnmax, F32(nmax - 1), out=L)
        W = X * X
        WXL, WLL = W * X * L, W * L * L
        sumlx, suml2 = seq_sum(WXL), seq_sum(WLL)
        descend(X, None, L, sumlx, suml2, WXL, WLL, lo=-nmax, hi=nmax - 1, qp=False)
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0.0)).astype(F32)
    L += fnmax
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale).astype(F32), L


def make_qp_quants(X: Floats, nmax: int, QW: Floats) -> tuple[Floats, Floats]:
    """`make_qp_quants(n, nmax, x, L, quant_weights)`: the scale of the (positive) sub-scales."""
    fnmax = F32(nmax)
    mx = np.maximum(X.max(axis=0), F32(0.0))
    zero = mx < GROUP_MAX_EPS

    def nint(v: Floats) -> Floats:
        return nearest_int(v).astype(F32)

    def mse(scale: Floats, Lv: Floats) -> Floats:
        diff = X - scale * Lv
        return seq_sum(QW * diff * diff)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = fnmax / mx
        best = mse(F32(1.0) / iscale, nint(iscale * X))
        for step in range(-4, 5):
            if step == 0:
                continue
            isc = (F32(0.1) * F32(step) + fnmax) / mx
            cur = mse(F32(1.0) / isc, np.minimum(fnmax, nint(isc * X)))
            upd = cur < best
            best = np.where(upd, cur, best)
            iscale = np.where(upd, isc, iscale)
        L = np.minimum(fnmax, nint(iscale * X))
        WXL, WLL = QW * X * L, QW * L * L
        sumlx, suml2 = seq_sum(WXL), seq_sum(WLL)
        descend(X, QW, L, sumlx, suml2, WXL, WLL, lo=-(2.0**31), hi=nmax, qp=True)
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0.0)).astype(F32)
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale).astype(F32), L
