"""ggml's `make_qx_quants` (rmse_type 1: 19 trial scales), vectorised over blocks: the
search of Q6_K, of Q3_K's levels and scales and of Q4_0/Q5_0 with an importance matrix.

Blocks are element-major `X[i, b]` (see `numerics`). Every trial's two sums are computed
first, each in C's order (one einsum pass per sum), then C's loop over the trials is
replayed on them; the level clamps are done on x, once per group of trials.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from quant.numerics import (
    F32,
    GROUP_MAX_EPS,
    Floats,
    column_slices,
    row_buffers,
    seq_dot,
    seq_dot_fused,
    signed_absmax,
)


def _qx_numerators(nmax: int) -> Floats:
    # the numerators of C's trial scales: -nmax, then -(nmax + 0.1*is) for is = -9..9, != 0
    fnmax = F32(nmax)
    return np.array(
        [-fnmax] + [-(fnmax + F32(0.1) * F32(k)) for k in range(-9, 10) if k], dtype=F32
    )


def make_qx_quants(X: Floats, nmax: int, QW: Floats | None = None) -> tuple[Floats, Floats]:
    """`make_qx_quants(n, nmax, x, L, rmse_type=1, qw)`: scale and L in 0..2*nmax-1."""
    scale, isc, zero = _qx_search(X, nmax, QW, with_isc=True)
    L = X * isc
    np.rint(L, out=L)
    np.clip(L, F32(-nmax), F32(nmax - 1), out=L)
    L += F32(nmax)
    L[:, zero] = 0
    return scale, L


def make_qx_scales(X: Floats, nmax: int, QW: Floats | None = None) -> Floats:
    """The scales of `make_qx_quants` alone, for callers that re-derive the levels from the
    stored scales (Q6_K): the chosen levels are never built, which saves five passes."""
    return _qx_search(X, nmax, QW, with_isc=False)[0]


#: blocks whose trial sums are replayed together: the replay's steps are a few row passes
#: per trial, cheaper per block on wider rows (16K measured best; 4K costs ~30% more)
QX_REPLAY_COLS = 1 << 14
#: elements per slice of the trial passes (2048 blocks of 16): the clamped x, the weights,
#: weights*x and the levels of `QX_TRIALS_PER_PASS` trials stay in the core's L2 (~1 MB)
QX_SLICE_ELEMS = 1 << 15
#: trials whose levels are computed and summed in one call each (fewer calls)
QX_TRIALS_PER_PASS = 5


def _qx_search(
    X: Floats, nmax: int, QW: Floats | None, *, with_isc: bool
) -> tuple[Floats, Floats, np.ndarray]:
    """Per block: the chosen scale, the inverse scale of the chosen trial if asked for (its
    levels are clamp(nearest_int(isc * x))) and whether the block is all zero."""
    n, B = X.shape
    numer = _qx_numerators(nmax)
    mx, amax = signed_absmax(X)
    zero = amax < GROUP_MAX_EPS
    mx = np.where(zero, F32(1.0), mx).astype(F32)  # keeps the discarded lanes finite
    scale = np.empty(B, dtype=F32)
    isc = np.empty(B if with_isc else 0, dtype=F32)
    passes = _TrialPasses(X, QW, mx, nmax)
    for r in column_slices(1, B, QX_REPLAY_COLS):
        ISC = numer[:, None] / mx[None, r]
        SX = np.empty_like(ISC)
        S2 = np.empty_like(ISC)
        for s in column_slices(n, ISC.shape[1], QX_SLICE_ELEMS):
            passes.sums(slice(r.start + s.start, r.start + s.stop), ISC[:, s], SX[:, s], S2[:, s])
        pick = _qx_replay(SX, S2, scale[r])
        if with_isc:
            ISC.reshape(-1).take(pick, out=isc[r])
    scale[zero] = 0
    return scale, isc, zero


def _qx_replay(SX: Floats, S2: Floats, scale: Floats) -> np.ndarray:
    """The trials do not depend on each other's outcome: with the sums of every trial
    computed, C's loop is replayed on them. Writes the scales; returns where each comes
    from, as flat indices into the (trials, blocks) arrays. Overwrites SX."""
    nt, B = SX.shape
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        SC = SX / S2  # scale = sumlx/suml2 and best = scale*sumlx of every trial
        SC[0][S2[0] == 0] = 0  # C's first trial: scale 0 where suml2 is 0
        BE = SC * SX
        best = SC[0] * SX[0]
        SXX = np.multiply(SX, SX, out=SX)
        # WIN[k]: trial k replaces the best so far (`suml2 > 0 && sumlx*sumlx > best*suml2`)
        WIN = np.empty((nt, B), dtype=bool)
        WIN[0] = False
        positive = S2 > 0
        any_not_positive = not positive.all()  # (never, with non-negative weights)
        bound = np.empty_like(best)
        # best = BE[k] where trial k wins, as bit operations: on real weights (many winners)
        # np.putmask and np.copyto(where=) are slower
        best_bits = best.view(np.int32)
        keep, diff = np.empty((2, B), dtype=np.int32)
        for k in range(1, nt):
            np.multiply(best, S2[k], out=bound)
            wins = np.greater(SXX[k], bound, out=WIN[k])
            if any_not_positive:
                wins &= positive[k]
            np.negative(wins.view(np.int8), out=keep, casting="unsafe")  # -1: wins
            np.bitwise_xor(best_bits, BE[k].view(np.int32), out=diff)
            diff &= keep
            best_bits ^= diff
    # the last trial that won (0: none did), as a flat index
    last = (WIN.view(np.int8) * np.arange(nt, dtype=np.int8)[:, None]).max(axis=0)
    flat: np.ndarray = last.astype(np.intp)
    flat *= B
    flat += np.arange(B)
    SC.reshape(-1).take(flat, out=scale)
    return flat


class _TrialPasses:
    """The element passes of every trial, over slices of blocks: the clamp bounds are
    computed for all blocks at once, and every pass writes arrays kept from one slice to
    the next (contiguous views of the slice's width): fewer calls, no allocations."""

    def __init__(self, X: Floats, QW: Floats | None, mx: Floats, nmax: int) -> None:
        self.X, self.QW = X, QW
        self.groups = _qx_clamps(nmax)
        # per group, each block's lower and upper bound of x: its max's side is capped at
        # `same`*|max|, the other one at `opposite`*|max|
        a = np.abs(mx)
        pos = mx > 0
        self.bounds = np.empty((len(self.groups), 2, mx.size), dtype=F32)
        for (_, opposite, same), (lower, upper) in zip(self.groups, self.bounds, strict=True):
            np.copyto(lower, np.where(pos, -opposite * a, -same * a))
            np.copyto(upper, np.where(pos, same * a, opposite * a))
        n, B = X.shape
        cols = min(B, max(1, QX_SLICE_ELEMS // n))
        self._levels = np.empty(QX_TRIALS_PER_PASS * n * cols, dtype=F32)
        self._rows = np.empty((3, n * cols), dtype=F32)

    def sums(self, c: slice, ISC: Floats, SX: Floats, S2: Floats) -> None:
        """SX, S2 = sum w*x*l and sum w*l*l per trial and block of the slice c,
        l = clamp(nearest_int(ISC[k]*x)).

        In a block that is not all-zero |iscale*x| <= |numerator| (1 + 3 ulp), so np.rint
        is exact. The clamp is done once per group of trials instead of once per trial, on
        x (`_qx_clamps`); each sum is one einsum pass, over a few trials at a time.
        """
        X = self.X[:, c]
        with row_buffers(X.shape[1]):
            self._sums(X, c, ISC, SX, S2)

    def _sums(self, X: Floats, c: slice, ISC: Floats, SX: Floats, S2: Floats) -> None:
        n, B = X.shape
        W, WX, Xc = (row[: n * B].reshape(n, B) for row in self._rows)
        T = self._levels[: QX_TRIALS_PER_PASS * n * B].reshape(QX_TRIALS_PER_PASS, n, B)
        if self.QW is None:
            np.multiply(X, X, out=W)
        else:
            np.copyto(W, self.QW[:, c])
        np.multiply(W, X, out=WX)
        fused = seq_dot_fused(WX, W, T[0])
        # the second group's bounds are within the first's: it clamps the first's copy
        # (a maximum and a minimum: numpy's clip with array bounds is ~3x slower)
        src = X
        for (trials, _, _), (lower, upper) in zip(self.groups, self.bounds[:, :, c], strict=True):
            np.maximum(src, lower, out=Xc)
            np.minimum(Xc, upper, out=Xc)
            src = Xc
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
