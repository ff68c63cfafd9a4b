"""The coordinate descent that ends `make_q3_quants` and `make_qp_quants`, vectorised over
blocks by jumping from one change to the next.

C runs passes over a block's elements (at most 5, until one changes nothing); at each
element it computes a new level from the block's current sums and takes it when the
weighted error goes down, which updates the sums the next elements see. Until the next
change every element of the pass sees the same sums, so one vectorised test of the
block's elements finds the next element C changes (the first after the last change that
passes). When a pass ends, the next one starts with the same sums, so the same test also
gives its first change: a block costs one round per change, plus one, not a step per
element per pass. A round tests in two stages: a cheap one over every element (is
`slx > 0` and does the new level differ from the old? ~1.6% of SmolLM2's elements), then
C's error test on those alone. On SmolLM2's Q3_K tensors this is 6.0 ms per million
weights, where the element-by-element passes took 8.1 (a quarter of the blocks, mostly
one change and a pass that confirms it).
"""

from __future__ import annotations

import numpy as np

from quant.numerics import F32, Floats, Ints, column_slices

_MAGIC = F32(12582912.0)  # 1.5 * 2**23: ggml's nearest_int adds it and keeps the mantissa
_BIAS = 0x400000  # the mantissa of l + _MAGIC is l + _BIAS (|l| < 2**22)
_MANTISSA = 0x7FFFFF
_PASSES = 5


def _mantissas(v: Floats) -> Ints:
    """`nearest_int(v) + _BIAS`, by ggml's bit trick: a level l as its mantissa."""
    m = (v + _MAGIC).view(np.int32)
    np.bitwise_and(m, _MANTISSA, out=m)
    return m


def _differ(  # noqa: PLR0917
    X: Floats, Lm: Ints, WXL: Floats, WLL: Floats, sx: Floats, s2: Floats, lo: int, hi: int
) -> tuple[Ints, Ints]:
    """Flat indices of the elements where `slx > 0` and C's clamped new level
    `nearest_int(x * sl2 / slx)` differs from the level, and those new levels (both as
    mantissas; `lo`, `hi` the clamp as mantissas)."""
    slx = sx - WXL
    v = s2 - WLL
    np.multiply(X, v, out=v)
    np.divide(v, slx, out=v)
    # ggml's bit trick itself, whatever the value (huge, infinite, NaN)
    np.add(v, _MAGIC, out=v)
    new = v.view(np.int32)
    np.bitwise_and(new, _MANTISSA, out=new)
    np.clip(new, lo, hi, out=new)
    differ = np.not_equal(new, Lm)
    differ &= slx > 0  # else C leaves the element alone
    at = np.flatnonzero(differ)
    return at, new.reshape(-1)[at]


class _Blocks:
    """The blocks still descending, `cols` of the caller's: element-major (n, m) copies of
    x, the weights (None: w = x*x), the levels' mantissas and the products `w*x*l`,
    `w*l*l` the sums were added from; per block the sums, the row of the last change (-1
    before the first) and the number of the pass it was made in."""

    def __init__(  # noqa: PLR0917
        self,
        cols: Ints,
        X: Floats,
        W: Floats | None,
        Lm: Ints,
        WXL: Floats,
        WLL: Floats,
        sx: Floats,
        s2: Floats,
    ) -> None:
        self.cols, self.X, self.W, self.Lm, self.WXL, self.WLL = cols, X, W, Lm, WXL, WLL
        self.sx, self.s2 = sx, s2
        m = cols.size
        self.after = np.full(m, -1, dtype=np.intp)
        self.passes = np.zeros(m, dtype=np.int8)

    def take(self, keep: Ints) -> _Blocks:
        """Only these blocks' state (copied)."""

        def cut(a: Floats) -> Floats:
            return np.take(a, keep, axis=1)

        b = _Blocks(
            self.cols[keep],
            cut(self.X),
            None if self.W is None else cut(self.W),
            cut(self.Lm),
            cut(self.WXL),
            cut(self.WLL),
            self.sx[keep],
            self.s2[keep],
        )
        b.after, b.passes = self.after[keep], self.passes[keep]
        return b

    def candidates(self, lo: int, hi: int) -> tuple[Ints, Ints]:
        """`_differ`'s elements of these blocks: flat indices into the arrays, new levels."""
        n, m = self.X.shape
        ats, news = [], []
        for s in column_slices(n, m):
            at, new = _differ(
                self.X[:, s], self.Lm[:, s], self.WXL[:, s], self.WLL[:, s],
                self.sx[s], self.s2[s], lo, hi,
            )  # fmt: skip
            if s.stop - s.start != m:
                r, c = np.divmod(at, s.stop - s.start)
                at = r * m + c + s.start
            ats.append(at)
            news.append(new)
        if len(ats) == 1:
            return ats[0], news[0]
        return np.concatenate(ats), np.concatenate(news)


class _Changes:
    """Of `_differ`'s candidates (flat indices, new levels), C's next change in each block
    that has one: the first accepted element after the block's last change, else, if a
    pass remains, the first of the next pass (which starts with the same sums, so the
    same test decides). Per change its flat index, row and block, whether it starts a
    pass, the new level (and its mantissa), the new products and sums."""

    def __init__(self, b: _Blocks, at: Ints, nm: Ints, qp: bool) -> None:
        n, m = b.X.shape
        r, c = np.divmod(at, m)
        x = b.X.reshape(-1)[at]
        sx, s2 = b.sx[c], b.s2[c]
        slx = sx - b.WXL.reshape(-1)[at]
        sl2 = s2 - b.WLL.reshape(-1)[at]
        w = x * x if b.W is None else b.W.reshape(-1)[at]
        lf = (nm - _BIAS).astype(F32)
        wxl = w * x * lf
        wll = w * lf * lf
        slx2 = slx + wxl
        sl22 = sl2 + wll
        # `_differ` found slx > 0 and a new level: C's remaining tests
        ok = (sl2 > 0) if qp else (sl22 > 0)
        ok &= slx2 * slx2 * s2 > sx * sx * sl22
        k = np.flatnonzero(ok)
        # rank the elements after the last change before those of the next pass
        rk, ck = r[k], c[k]
        key = rk + n * (rk <= b.after[ck])
        first = np.full(m, 2 * n, dtype=key.dtype)
        np.minimum.at(first, ck, key)
        pick = key == first[ck]
        k, key = k[pick], key[pick]
        fresh = key >= n
        if fresh.any():  # C stops after its fifth pass
            allowed = ~fresh | (b.passes[c[k]] < _PASSES - 1)
            k, fresh = k[allowed], fresh[allowed]
        self.at, self.r, self.c, self.fresh = at[k], r[k], c[k], fresh
        self.nm, self.new = nm[k], lf[k]
        self.wxl, self.wll, self.sx, self.s2 = wxl[k], wll[k], slx2[k], sl22[k]

    def apply(self, b: _Blocks, L: Floats, sumlx: Floats, suml2: Floats) -> None:
        """Into the blocks' state and the caller's levels and sums."""
        b.Lm.reshape(-1)[self.at] = self.nm
        b.WXL.reshape(-1)[self.at] = self.wxl
        b.WLL.reshape(-1)[self.at] = self.wll
        b.sx[self.c], b.s2[self.c] = self.sx, self.s2
        b.after[self.c] = self.r
        b.passes[self.c[self.fresh]] += 1
        cols = b.cols[self.c]
        L[self.r, cols] = self.new
        sumlx[cols], suml2[cols] = self.sx, self.s2


def _first_round(  # noqa: PLR0917
    X: Floats,
    W: Floats | None,
    L: Floats,
    WXL: Floats,
    WLL: Floats,
    sx: Floats,
    s2: Floats,
    lo: int,
    hi: int,
) -> tuple[_Blocks, Ints, Ints]:
    """The blocks where some element may change in the first pass, copied, and the
    candidates: flat indices into the copies, new levels."""
    n, B = X.shape
    rows, cols, news = [], [], []
    for s in column_slices(n, B):
        at, new = _differ(X[:, s], _mantissas(L[:, s]), WXL[:, s], WLL[:, s], sx[s], s2[s], lo, hi)
        r, c = np.divmod(at, s.stop - s.start)
        rows.append(r)
        cols.append(c + s.start)
        news.append(new)
    r, c = np.concatenate(rows), np.concatenate(cols)
    mark = np.zeros(B, dtype=bool)
    mark[c] = True
    live = np.flatnonzero(mark)
    place = np.empty(B, dtype=np.intp)
    place[live] = np.arange(live.size)

    def cut(a: Floats) -> Floats:
        return np.take(a, live, axis=1)

    b = _Blocks(
        live,
        cut(X),
        None if W is None else cut(W),
        _mantissas(cut(L)),
        cut(WXL),
        cut(WLL),
        sx[live],
        s2[live],
    )
    return b, r * live.size + place[c], np.concatenate(news)


def descend(  # noqa: PLR0917
    X: Floats,
    W: Floats | None,
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
    """The descent of `make_q3_quants` (`make_qp_quants` with `qp`) on element-major
    blocks, in place: `L` (levels in lo..hi), `sumlx`, `suml2` as C leaves them. `WXL`,
    `WLL` are the products the sums were added from (`W*X*L`, `W*L*L`; W = X*X if None)."""
    if X.shape[1] == 0:
        return
    lo_m, hi_m = max(int(lo) + _BIAS, 0), int(hi) + _BIAS
    b, at, new = _first_round(X, W, L, WXL, WLL, sumlx, suml2, lo_m, hi_m)
    retired = np.zeros(b.cols.size, dtype=bool)
    while at.size:
        ch = _Changes(b, at, new, qp)
        ch.apply(b, L, sumlx, suml2)
        # a block without a next change is done (and, its sums unchanged, finds none again)
        retired[:] = True
        retired[ch.c] = False
        count = int(np.count_nonzero(retired))
        if count == retired.size:
            return
        if 2 * count >= retired.size:
            b = b.take(np.flatnonzero(~retired))
            retired = np.zeros(b.cols.size, dtype=bool)
        at, new = b.candidates(lo_m, hi_m)
