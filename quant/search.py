"""ggml's scale searches (`make_qx_quants`, `make_q3_quants`, `make_qkx2/3_quants`,
`make_qp_quants`), vectorised over blocks.

Every function takes element-major blocks `X[i, b]` (see `numerics`) and returns per-block
scales and the integer levels `L` as float32, exactly as the C helpers leave them
(including `L = 0` for all-zero blocks). Python loops run over search steps, over the
elements of one block and over cache-sized slices of blocks, never over single blocks.
"""

from __future__ import annotations

from functools import cache

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
    seq_dot_fused,
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
    WL = np.empty_like(X)
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
        # sum w*l, sum (w*l)*l, sum (w*l)*x
        np.multiply(W, Lv, out=WL)
        seq_sum(WL, out=sl)
        np.multiply(WL, Lv, out=T)
        seq_sum(T, out=sl2)
        np.multiply(WL, X, out=T)
        seq_sum(T, out=sxl)
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
        np.multiply(T, W, out=T)
        return seq_sum(T, out=err)

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


def _qx_numerators(nmax: int) -> Floats:
    # the numerators of C's trial scales: -nmax, then -(nmax + 0.1*is) for is = -9..9, != 0
    fnmax = F32(nmax)
    return np.array(
        [-fnmax] + [-(fnmax + F32(0.1) * F32(k)) for k in range(-9, 10) if k], dtype=F32
    )


def make_qx_quants(X: Floats, nmax: int, QW: Floats | None = None) -> tuple[Floats, Floats]:
    """`make_qx_quants(n, nmax, x, L, rmse_type=1, qw)`: scale and L in 0..2*nmax-1."""
    scale, isc, zero = _qx_search(X, nmax, QW)
    L = X * isc
    np.rint(L, out=L)
    np.clip(L, F32(-nmax), F32(nmax - 1), out=L)
    L += F32(nmax)
    L[:, zero] = 0
    return scale, L


def make_qx_scales(X: Floats, nmax: int, QW: Floats | None = None) -> Floats:
    """The scales of `make_qx_quants` alone, for callers that re-derive the levels from the
    stored scales (Q6_K): the chosen levels are never built, which saves five passes."""
    return _qx_search(X, nmax, QW)[0]


#: columns whose trial sums are replayed together: the replay's per-block steps cost less on
#: wider arrays, while its rows of sums still stay in the core's L2
QX_REPLAY_COLS = 1 << 14
#: elements per slice of the trial passes: x, its clamped copy, the weights, weights*x and
#: the levels (four or five arrays) stay in the core's L2
QX_SLICE_ELEMS = 1 << 15
#: trials whose levels are computed and summed in one call each: fewer calls, while the
#: slice's arrays and these levels stay in the core's L2 (about 1 MB)
QX_TRIALS_PER_PASS = 5


def _qx_search(X: Floats, nmax: int, QW: Floats | None) -> tuple[Floats, Floats, np.ndarray]:
    """Per block: the chosen scale, the inverse scale of the chosen trial (its levels are
    clamp(nearest_int(isc * x))) and whether the block is all zero."""
    n, B = X.shape
    numer = _qx_numerators(nmax)
    top, bottom = X.max(axis=0), X.min(axis=0)
    mx, amax = signed_absmax(X, (top, bottom))
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1.0), mx).astype(F32)  # keeps the discarded lanes finite
    scale = np.empty(B, dtype=F32)
    isc = np.empty(B, dtype=F32)
    for r in column_slices(1, B, QX_REPLAY_COLS):
        ISC = numer[:, None] / mx[None, r]
        SX = np.empty_like(ISC)
        S2 = np.empty_like(ISC)
        for s in column_slices(n, ISC.shape[1], QX_SLICE_ELEMS):
            c = slice(r.start + s.start, r.start + s.stop)
            Xs = np.ascontiguousarray(X[:, c])
            W = Xs * Xs if QW is None else np.ascontiguousarray(QW[:, c])
            _qx_sums(Xs, W, ISC[:, s], mx[c], nmax, SX[:, s], S2[:, s])
        scale[r], pick = _qx_replay(SX, S2)
        isc[r] = ISC[pick, np.arange(pick.size)]
    scale[zero] = 0
    return scale, isc, zero


def _qx_replay(SX: Floats, S2: Floats) -> tuple[Floats, np.ndarray]:
    """The trials do not depend on each other's outcome: with the sums of every trial
    computed, C's loop is replayed on them. Returns the scale and the trial it comes from."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        SC = SX / S2  # scale = sumlx/suml2 and best = scale*sumlx of every trial
        BE = SC * SX
        SXX = SX * SX
        scale0 = np.where(S2[0] != 0, SC[0], F32(0.0)).astype(F32)
        best = scale0 * SX[0]
        # UPD[k]: trial k replaces the best so far (`suml2 > 0 && sumlx*sumlx > best*suml2`)
        UPD = S2 > 0
        bound = np.empty_like(best)
        wins = np.empty(best.shape, dtype=bool)
        # best = BE[k] where trial k wins, as bit operations: on real weights (many winners)
        # np.putmask is slower
        best_bits = best.view(np.int32)
        keep, diff = np.empty((2, best.size), dtype=np.int32)
        for k in range(1, SX.shape[0]):
            np.multiply(best, S2[k], out=bound)
            np.greater(SXX[k], bound, out=wins)
            UPD[k] &= wins
            np.negative(UPD[k].view(np.int8), out=keep, casting="unsafe")  # -1: wins
            np.bitwise_xor(best_bits, BE[k].view(np.int32), out=diff)
            diff &= keep
            best_bits ^= diff
    UPD[0] = False
    # the last trial that won (0: none did)
    pick = (UPD.view(np.int8) * np.arange(SX.shape[0], dtype=np.int8)[:, None]).max(axis=0)
    pick = pick.astype(np.intp)
    cols = np.arange(SX.shape[1])
    return np.where(pick == 0, scale0, SC[pick, cols]).astype(F32), pick


def _qx_sums(  # noqa: PLR0917
    X: Floats, W: Floats, ISC: Floats, mx: Floats, nmax: int, SX: Floats, S2: Floats
) -> None:
    """SX, S2 = sum w*x*l and sum w*l*l per trial and block, l = clamp(nearest_int(ISC[k]*x)).

    In a block that is not all-zero |iscale*x| <= |numerator| (1 + 3 ulp), so np.rint is
    exact. The clamp is done once per group of trials instead of once per trial, on x
    (`_qx_clamps`); each sum is one einsum pass, over a few trials at a time (fewer calls).
    """
    T = np.empty((QX_TRIALS_PER_PASS, *X.shape), dtype=F32)
    WX = W * X
    fused = seq_dot_fused(WX, W, T[0])
    a = np.abs(mx)
    pos = mx > 0
    Xc = X
    for trials, opposite, same in _qx_clamps(nmax):
        # clamp x to [lower, upper] (per block: its max's side is `same`); the second
        # group's bounds are within the first's, so it clamps the first's copy in place
        # (a maximum and a minimum: numpy's clip with array bounds is ~3x slower)
        lower = np.where(pos, -opposite * a, -same * a)
        upper = np.where(pos, same * a, opposite * a)
        Xc = np.maximum(Xc, lower, out=None if Xc is X else Xc)
        np.minimum(Xc, upper, out=Xc)
        for first in range(trials.start, trials.stop, QX_TRIALS_PER_PASS):
            k = slice(first, min(first + QX_TRIALS_PER_PASS, trials.stop))
            Tk = T[: k.stop - k.start]
            np.multiply(Xc, ISC[k, None, :], out=Tk)
            np.rint(Tk, out=Tk)
            if fused:
                np.einsum("ij,kij->kj", WX, Tk, out=SX[k])
                np.einsum("ij,kij,kij->kj", W, Tk, Tk, out=S2[k])
                continue
            for j, Tj in enumerate(Tk, k.start):
                seq_dot(WX, Tj, out=SX[j])
                seq_dot(W, Tj, Tj, out=S2[j])


@cache
def _qx_clamps(nmax: int) -> tuple[tuple[slice, F32, F32], ...]:
    """The trials of `make_qx_quants` in two groups (numerators up to nmax, and past it),
    each with the clamp of x that gives its levels without clamping them: within a group,
    clamp(nearest_int(isc*x), -nmax, nmax-1) = nearest_int(isc*clamp(x, ...)).

    With u = |x|/|max| and t = |numerator|, a level is nearest_int(u*t), signed: positive on
    the side opposite to the block's max, capped at nmax-1, negative on the max's side,
    capped at -nmax. A cap reached at some u reaches every larger u too, so for each side
    one u0 does it for every t of the group: u0*t lands strictly inside the capped level's
    rounding interval (margin 0.01, where float32 rounding moves levels by 1e-5), while any
    u*t below it rounds under the cap. u0 = 1 (no clamp) where the group never caps a side.
    """
    numer = np.abs(_qx_numerators(nmax)).astype(np.float64)
    groups = []
    # (trial 0's numerator is nmax; then nmax-0.9 ... nmax-0.1, nmax+0.1 ... nmax+0.9)
    for trials in (slice(0, 10), slice(10, 19)):
        ta, tb = numer[trials].min(), numer[trials].max()
        assert (numer[trials] <= nmax).all() == (trials.start == 0)
        bounds = []
        for cap in (nmax - 1, nmax):  # the opposite side's cap, then the max's side's
            if tb < cap + 0.5 - 0.01:
                bounds.append(F32(1.0))
                continue
            u0 = ((cap - 0.5) / ta + (cap + 0.5) / tb) / 2
            margin = min(u0 * ta - (cap - 0.5), (cap + 0.5) - u0 * tb)
            if not margin >= 0.01:  # cannot happen for the nmax ggml uses (4, 8, 16, 32)
                raise ValueError(f"no clamp of x for nmax {nmax}")
            bounds.append(F32(u0))
        groups.append((trials, bounds[0], bounds[1]))
    # `_qx_sums` clamps the second group's x from the first's
    assert groups[1][1] <= groups[0][1] and groups[1][2] <= groups[0][2]
    return tuple(groups)


def _descend(
    X: Floats,
    W: Floats,
    L: Floats,
    sumlx: Floats,
    suml2: Floats,
    *,
    lo: float,
    hi: float,
    qp: bool,
) -> None:
    """The coordinate descent of `make_q3_quants` (and of `make_qp_quants` with `qp`), in place.

    Each block runs passes over its elements until a pass changes nothing (at most 5). A
    pass that changes nothing sees the same sums at every element, so one vectorised test
    over all elements finds the blocks that are already converged; only the others run the
    element-by-element passes, and a block that stops is dropped from the arrays.
    """
    n, B = X.shape
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

    moving = np.zeros(B, dtype=bool)
    for s in column_slices(n, B):
        Xs, Ws = X[:, s], W[:, s]
        moving[s] = candidates(Xs, Ws, Ws * Xs, L[:, s], sumlx[s], suml2[s])[3].any(axis=0)
    live = np.flatnonzero(moving)
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
        sumlx = seq_sum(W * X * L)
        suml2 = seq_sum(W * L * L)
        _descend(X, W, L, sumlx, suml2, lo=-nmax, hi=nmax - 1, qp=False)
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
        sumlx = seq_sum(QW * X * L)
        suml2 = seq_sum(QW * L * L)
        _descend(X, QW, L, sumlx, suml2, lo=-(2.0**31), hi=nmax, qp=True)
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0.0)).astype(F32)
    L[:, zero] = 0
    return np.where(zero, F32(0.0), scale).astype(F32), L
