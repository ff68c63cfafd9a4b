"""ggml's scale searches (`make_q3_quants`, `make_qkx2/3_quants`, `make_qp_quants`;
`make_qx_quants` is in `qx_search`), vectorised over blocks.

Every function takes element-major blocks `X[i, b]` (see `numerics`) and returns per-block
scales and the integer levels `L` as float32, exactly as the C helpers leave them
(including `L = 0` for all-zero blocks). Python loops run over search steps, over the
elements of one block and over cache-sized slices of blocks, never over single blocks.
"""

from __future__ import annotations

import numpy as np

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
    seq_sum,
    seq_sum_first,
    signed_absmax,
)

#: the min/scale search does a dozen per-block (not per-element) operations per step: on
#: 32-element blocks (Q4_K, Q5_K) slices four times the default's size halve their share
#: (~20% less CPU on SmolLM2's weights); Q2_K's 16-element blocks run slower so (measured)
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
    n, B = X.shape
    scale = np.empty(B, dtype=F32)
    the_min = np.empty(B, dtype=F32)
    L = np.empty((n, B), dtype=F32)
    for s in column_slices(n, B, QKX_SLICE_ELEMS if n >= 32 else None):
        scale[s], the_min[s], L[:, s] = _qkx_slice(
            np.ascontiguousarray(X[:, s]),
            np.ascontiguousarray(W[:, s]),
            nmax,
            rmin,
            rdelta,
            nstep,
            use_mad,
            v3,
        )
    return scale, the_min, L


def _qkx_slice(  # noqa: PLR0917
    X: Floats, W: Floats, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool, v3: bool
) -> tuple[Floats, Floats, Floats]:
    xmin = first_min(X)
    mx = first_max(X)
    sum_w = seq_sum_first(W)
    sum_x = seq_sum_first(W * X)
    mn = np.where(xmin > 0, F32(0.0), xmin).astype(F32)
    deg = (mx <= mn) if v3 else (mx == mn)
    live = ~deg
    fnmax = F32(nmax)
    no_clamp_top = F32(nmax + 0.4)  # below this numerator, isc*(x - min) < nmax + 0.5
    T = np.empty_like(X)
    La = np.empty_like(X)

    # Per block: den = max - min (1 for degenerate blocks); `unsafe`: isc*(x - min) may leave
    # the range where np.rint equals nearest_int; `below`: min > the smallest x (levels can
    # be negative and need the lower clamp). Kept up to date as blocks change their min.
    den = np.where(deg, F32(1.0), mx - mn).astype(F32)
    unsafe = np.zeros(X.shape[1], dtype=bool)
    below = np.zeros(X.shape[1], dtype=bool)

    def update_ranges(u: np.ndarray, m: Floats) -> tuple[bool, bool]:
        if u.size > m.size // 8:  # whole-slice passes cost less than gathers of many blocks
            np.subtract(mx, m, out=den, where=live)
            gap = m - xmin
            np.logical_not((den >= F32(1e-30)) & (gap <= den * F32(1e5)), out=unsafe, where=live)
            np.greater(gap, 0, out=below, where=live)
        else:
            den[u] = mx[u] - m[u]
            gap = m[u] - xmin[u]
            unsafe[u] = ~((den[u] >= F32(1e-30)) & (gap <= den[u] * F32(1e5)))
            below[u] = gap > 0
        return not unsafe.any(), bool(below.any())

    Xm = X - mn  # x - min, kept up to date as blocks change their min
    sl, sl2, sxl, err = (np.empty(X.shape[1], dtype=F32) for _ in range(4))

    def levels(isc: Floats, xm: Floats, exact: bool, clamp: bool, out: Floats) -> None:
        # out = clamp(nearest_int(isc * (x - m)), 0, nmax)
        np.multiply(xm, isc, out=out)
        if exact:
            np.rint(out, out=out)
        else:
            out[...] = nearest_float(out, exact=False)
        if clamp or not exact:
            np.clip(out, F32(0.0), fnmax, out=out)

    def sums(Lv: Floats) -> tuple[Floats, Floats, Floats]:
        # sum w*l, sum (w*l)*l, sum (w*l)*x: one fused pass each (seq_dot)
        seq_dot(W, Lv, out=sl)
        seq_dot(W, Lv, Lv, out=sl2)
        seq_dot(W, Lv, X, out=sxl)
        return sl, sl2, sxl

    def error(scale: Floats, the_min: Floats, Lv: Floats) -> Floats:
        # sum_i w * f(scale*L + min - x), f = |.| or square
        np.multiply(Lv, scale, out=T)
        np.add(T, the_min, out=T)
        np.subtract(T, X, out=T)
        if use_mad:
            np.abs(T, out=T)
        else:
            np.square(T, out=T)
        return seq_dot(T, W, out=err)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        exact, negative = update_ranges(np.flatnonzero(live), mn)
        iscale = (fnmax / den).astype(F32)
        scale = (F32(1.0) / iscale).astype(F32)
        levels(iscale, Xm, exact, negative, La)
        best = error(scale, mn, La).copy()
        # The levels of a step are a function of (iscale, min) at that step: remember those
        # of the best step per block and rebuild L once at the end.
        best_isc, best_mn = iscale.copy(), mn.copy()
        for step in range(nstep + 1):
            numer = F32(rmin) + F32(rdelta) * F32(step) + fnmax
            isc = numer / den
            levels(isc, Xm, exact, negative or bool(numer > no_clamp_top), La)
            sl, sl2, sxl = sums(La)
            D = sum_w * sl2 - sl * sl
            this_scale = (sum_w * sxl - sum_x * sl) / D
            this_min = (sl2 * sum_x - sl * sxl) / D
            pos = this_min > 0
            this_min = np.where(pos, F32(0.0), this_min)
            this_scale = np.where(pos, sxl / sl2, this_scale)
            cur = error(this_scale, this_min, La)
            upd = (D > 0) & (cur < best) & live
            if not upd.any():
                continue
            u = np.flatnonzero(upd)
            best_isc[u] = isc[u]
            best_mn[u] = mn[u]
            best[u] = cur[u]
            scale[u] = this_scale[u]
            mn[u] = this_min[u]
            exact, negative = update_ranges(u, mn)
            # x - min for the next step: a full pass costs less than a gather of many blocks
            if u.size > X.shape[1] // 16:
                np.subtract(X, mn, out=Xm)
            else:
                Xm[:, u] = X[:, u] - mn[u]
        exact, _ = update_ranges(np.flatnonzero(live), best_mn)
        levels(best_isc, X - best_mn, exact, True, La)
    La[:, deg] = 0
    return np.where(deg, F32(0.0), scale).astype(F32), (-mn).astype(F32), La


def _may_move(  # noqa: PLR0917
    X: Floats,
    WXL: Floats,
    WLL: Floats,
    L: Floats,
    sumlx: Floats,
    suml2: Floats,
    lo: float,
    hi: float,
) -> np.ndarray:
    """The blocks where the descent's first pass may change a level: some element has
    `slx > 0` and a new level unlike its own (`WXL`, `WLL`: the products the sums added).

    Only ~1.5% of SmolLM2's elements (~15% of its blocks) pass, so this cheap superset of
    the exact test (which also compares the errors) leaves the element-by-element passes a
    few more blocks to find unchanged, and saves half of the test's passes over every
    element. Where `np.rint` could differ from `nearest_int`'s bit trick (|v| >= 2**22, or
    not finite) the element counts as one that may move.
    """
    n, B = X.shape
    moving = np.zeros(B, dtype=bool)
    flo, fhi = F32(lo), F32(hi)
    for s in column_slices(n, B):
        slx = sumlx[s] - WXL[:, s]
        v = suml2[s] - WLL[:, s]
        np.multiply(X[:, s], v, out=v)
        np.divide(v, slx, out=v)
        new = np.rint(v)
        np.clip(new, flo, fhi, out=new)
        may = new != L[:, s]
        np.abs(v, out=v)
        may |= ~(v < F32(4194304.0))
        may &= slx > 0
        moving[s] = may.any(axis=0)
    return moving


def _descend(  # noqa: PLR0917
    X: Floats,
    W: Floats,
    L: Floats,
    sumlx: Floats,
    suml2: Floats,
    WXL: Floats,
    WLL: Floats,
    *,
    lo: float,
    hi: float,
    qp: bool,
) -> None:
    """The coordinate descent of `make_q3_quants` (and of `make_qp_quants` with `qp`), in place.

    Each block runs passes over its elements until a pass changes nothing (at most 5). A
    pass that changes nothing sees the same sums at every element, so one vectorised test
    over all elements finds the blocks that may not be converged (`_may_move`); only those
    run the element-by-element passes, and a block that stops is dropped from the arrays.
    `WXL`, `WLL` are the products `sumlx`, `suml2` were summed from.
    """
    n = X.shape[0]
    flo, fhi = F32(lo), F32(hi)

    def candidates(  # noqa: PLR0917
        x: Floats, w: Floats, wx: Floats, Li: Floats, sx: Floats, s2: Floats
    ) -> tuple[Floats, Floats, Floats, np.ndarray]:
        slx = sx - wx * Li
        sl2 = s2 - w * Li * Li
        new_l = np.clip(nearest_int(x * sl2 / slx).astype(F32), flo, fhi)
        slx2 = slx + wx * new_l
        sl22 = sl2 + w * new_l * new_l
        upd = (slx > 0) & (new_l != Li) & (slx2 * slx2 * s2 > sx * sx * sl22)
        upd &= (sl2 > 0) if qp else (sl22 > 0)
        return new_l, slx2, sl22, upd

    live = np.flatnonzero(_may_move(X, WXL, WLL, L, sumlx, suml2, lo, hi))
    if live.size == 0:
        return
    Xa, Wa, La = (np.ascontiguousarray(a[:, live]) for a in (X, W, L))
    WXa = Wa * Xa
    sx, s2 = sumlx[live], suml2[live]
    for _ in range(5):
        changed = np.zeros(live.size, dtype=bool)
        for i in range(n):
            Li = La[i]
            new_l, slx2, sl22, upd = candidates(Xa[i], Wa[i], WXa[i], Li, sx, s2)
            np.copyto(Li, new_l, where=upd)
            np.copyto(sx, slx2, where=upd)
            np.copyto(s2, sl22, where=upd)
            changed |= upd
        L[:, live] = La
        sumlx[live] = sx
        suml2[live] = s2
        if not changed.all():
            live = live[changed]
            if live.size == 0:
                break
            Xa, Wa, La, WXa = (np.ascontiguousarray(a[:, changed]) for a in (Xa, Wa, La, WXa))
            sx, s2 = sx[changed], s2[changed]


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
        _descend(X, W, L, sumlx, suml2, WXL, WLL, lo=-nmax, hi=nmax - 1, qp=False)
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
        _descend(X, QW, L, sumlx, suml2, WXL, WLL, lo=-(2.0**31), hi=nmax, qp=True)
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0.0)).astype(F32)
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale).astype(F32), L
