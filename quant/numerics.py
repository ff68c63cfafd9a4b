"""Float32 building blocks that reproduce ggml's C arithmetic bit for bit.

Conventions shared by every kernel: arrays of blocks are laid out *element-major*,
`X[i, b]` is element `i` of block `b`, so a column is one block and a row slice `X[i]` is
contiguous. Reductions that C does with a `for` loop are done in the same order here
(`np.add.reduce` over axis 0 of a C-contiguous 2-D array adds row after row, which is the
C order for every column); every constant is a float32 scalar so no expression is
silently widened to float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = np.float32
# Names for what an array holds; numpy's dtype typing is too coarse to check kernels with.
Floats = npt.NDArray[Any]  # float32
Ints = npt.NDArray[Any]  # integer levels
Bytes = npt.NDArray[Any]  # uint8

GROUP_MAX_EPS = F32(1e-15)
_MAGIC = F32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer in the mantissa


@contextmanager
def row_buffers(width: int) -> Iterator[None]:
    """numpy's buffer size set to `width` values (a multiple of 16) for the block: for
    arrays `width` wide with an operand broadcast along rows (a per-block row), numpy's
    iterator otherwise gathers several rows into its 8192-value buffers, which costs a
    multiply over rows of 2048 a third more time (numpy 2.4). (numpy 1.x wants a multiple of
    16 up to 10 million.)"""
    size = min(max(width, 16), 1 << 20)
    old = np.setbufsize(size - size % 16)
    try:
        yield
    finally:
        np.setbufsize(old)


def fp16_round(x: Floats) -> Floats:
    """`GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x))`: round to half (nearest-even), back to float."""
    return x.astype(np.float16).astype(F32)


def fp16_bytes(x: Floats) -> Bytes:
    """Little-endian fp16 bytes of `x` (shape `x.shape + (2,)`)."""
    return np.ascontiguousarray(x.astype("<f2")).view(np.uint8).reshape(*x.shape, 2)


def nearest_int(v: Floats) -> Ints:
    """ggml's `nearest_int`, including what its bit trick does outside +-2**22, inf and NaN."""
    with np.errstate(invalid="ignore", over="ignore"):
        val = (v + _MAGIC).astype(F32)
    return (val.view(np.int32) & 0x7FFFFF) - 0x400000


def nearest_float(v: Floats, exact: bool) -> Floats:
    """`(float)nearest_int(v)`: np.rint when every |v| < 2**22 is known, else the bit trick."""
    if exact:
        return np.rint(v)
    return nearest_int(v).astype(F32)


def seq_sum(a: Floats, out: Floats | None = None) -> Floats:
    """`float s = 0; for (i...) s += a[i];` for every column of a C-contiguous (n, B) array."""
    if a.shape[1] < 2:
        # one column would make numpy pick its pairwise inner loop: do it by hand
        acc = np.zeros(a.shape[1], dtype=F32) if out is None else out
        acc[...] = 0
        for row in a:
            acc += row
        return acc
    # In C order numpy adds row after row; another layout could make it sum pairwise.
    a = np.ascontiguousarray(a)
    if out is not None:
        return np.add.reduce(a, axis=0, out=out, initial=F32(0.0))
    return np.asarray(np.add.reduce(a, axis=0, initial=F32(0.0)), dtype=F32)


#: narrower arrays run `seq_dot` without einsum: with one column numpy would make the element
#: axis einsum's inner loop and sum it with several accumulators
_EINSUM_MIN_COLS = 16


@cache
def _einsum_is_sequential() -> bool:
    """Whether this numpy's einsum sums `'ij,ij->j'`, `'ij,ij,ij->j'` and their batched forms
    (`'ij,kij->kj'`: one sum per k) row after row with a separate rounding per product and
    per sum, as `seq_sum(a * b)` does (numpy 2.x's baseline loops do; an FMA or pairwise
    loop would differ in most columns here)."""

    def same(x: Floats, y: Floats) -> bool:
        return np.array_equal(x.view(np.int32), y.view(np.int32))

    def values(cols: int, seed: float) -> Floats:
        # varied signs, mantissas and magnitudes (numpy.random would cost an import)
        i = np.arange(1, 16 * cols + 1, dtype=np.float64).reshape(16, cols)
        return (np.sin(i * seed) * 10.0 ** (i * 7 % 5 - 2)).astype(F32)

    for cols in (_EINSUM_MIN_COLS, 61, 267):  # SIMD bodies and tails
        a, b, c = (values(cols, seed) for seed in (1.618, 2.718, 0.577))
        bc = np.stack([b, c])
        out = np.empty((3, cols), dtype=F32)[::2]  # rows apart, as a slice of a wider array
        if not (
            same(np.einsum("ij,ij->j", a, b), seq_sum(a * b))
            and same(np.einsum("ij,ij,ij->j", a, b, c), seq_sum(a * b * c))
            and same(np.einsum("ij,kij->kj", a, bc, out=out)[1], seq_sum(a * c))
            and same(np.einsum("ij,kij,kij->kj", a, bc, bc, out=out)[1], seq_sum(a * c * c))
        ):
            return False
    return True


def seq_dot_fused(*arrays: Floats) -> bool:
    """Whether `np.einsum("ij,ij[,ij]->j", ...)` on these arrays is `seq_dot`'s sum: they are
    C-contiguous and wide enough, and this numpy's einsum sums row after row. (einsum follows
    the memory order: on an F-ordered operand, say a fancy index, its inner loop would be the
    element axis, summed with several accumulators.)"""
    return (
        arrays[0].shape[1] >= _EINSUM_MIN_COLS
        and all(a.flags.c_contiguous for a in arrays)
        and _einsum_is_sequential()
    )


def seq_dot(*factors: Floats, out: Floats) -> Floats:
    """`seq_sum(f0 * f1 [* f2])` per column of (n, B) float32 arrays, products rounded left
    to right: one pass (einsum) instead of one per product and one for the sum."""
    if seq_dot_fused(*factors):
        return np.einsum(",".join(["ij"] * len(factors)) + "->j", *factors, out=out)
    prod = factors[0] * factors[1]
    for f in factors[2:]:
        prod *= f
    return seq_sum(prod, out=out)


def seq_sum_first(a: Floats) -> Floats:
    """`float s = a[0]; for (i = 1...) s += a[i];` (differs from `seq_sum` only for -0)."""
    if a.shape[1] >= 2 and a.flags.c_contiguous:
        # numpy's reduction without an initial value starts from row 0, then adds row after row
        return np.asarray(np.add.reduce(a, axis=0), dtype=F32)
    acc: Floats = a[0].copy()
    for row in a[1:]:
        acc += row
    return acc


def _fix_zero_sign(value: Floats, X: Floats) -> Floats:
    """Where `value` is a zero picked by a strict `<`/`>` scan, C keeps the first zero's sign."""
    zero = value == 0
    if zero.any():
        cols = np.nonzero(zero)[0]
        first = np.argmax(X[:, cols] == 0, axis=0)
        value[cols] = X[first, cols]
    return value


def first_min(X: Floats) -> Floats:
    """Per column, `min = x[0]; if (x[i] < min) min = x[i];` (the zero's sign included)."""
    return _fix_zero_sign(X.min(axis=0), X)


def first_max(X: Floats) -> Floats:
    """Per column, `max = x[0]; if (x[i] > max) max = x[i];`."""
    return _fix_zero_sign(X.max(axis=0), X)


def signed_absmax(
    X: Floats, extremes: tuple[Floats, Floats] | None = None
) -> tuple[Floats, Floats]:
    """Per column, the value with the largest |x| (first one wins) and that |x|.

    Mirrors `amax = 0; max = 0; if (ax > amax) { amax = ax; max = x; }`: an all-zero column
    gives `max = +0`. Only columns where +a and -a tie need the position of the first one.
    `extremes` are the columns' (max, min) when the caller has them already.
    """
    hi, lo = (X.max(axis=0), X.min(axis=0)) if extremes is None else extremes
    neg = -lo
    amax = np.maximum(hi, neg)
    mx = np.where(neg > hi, lo, hi)
    tie = (neg == hi) & (hi > 0)
    if tie.any():
        cols = np.flatnonzero(tie)
        sub = X[:, cols]
        first = np.argmax(np.abs(sub) == amax[cols], axis=0)
        mx[cols] = sub[first, np.arange(cols.size)]
    mx += F32(0.0)  # an all-zero column's -0 becomes +0 (any other value stays)
    return mx, amax


def signed_absmax_1d(v: Floats) -> tuple[Floats, Floats]:
    """`signed_absmax` over the last axis of a (B, n) array of per-block values."""
    A = np.abs(v)
    idx = np.argmax(A, axis=-1)
    rows = np.arange(v.shape[0])
    amax = A[rows, idx]
    mx = np.where(amax > 0, v[rows, idx], F32(0.0)).astype(F32)
    return mx, amax


def safe_div(a: Floats, b: Floats) -> Floats:
    """a / b in float32 with warnings off: callers mask out the lanes where b is 0."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.divide(a, b, dtype=F32)


def element_major(x: Floats, n: int) -> Floats:
    """Blocks of `n` consecutive values of `x` as a contiguous (n, nblocks) array.

    Copied in pieces of about 8K values: a piece and its transpose stay in cache, which
    makes this several times faster than one big transposing copy.
    """
    xb = x.reshape(-1, n)
    out = np.empty((n, xb.shape[0]), dtype=xb.dtype)
    piece = max(32, 8192 // n)
    for a in range(0, xb.shape[0], piece):
        out[:, a : a + piece] = xb[a : a + piece].T
    return out


SLICE_ELEMS = 1 << 16  # elements per cache-sized slice of the search loops


def column_slices(n: int, B: int, elems: int | None = None) -> list[slice]:
    """Column ranges of an (n, B) element-major array, each about `elems` values
    (`SLICE_ELEMS` by default)."""
    step = max(1, (elems or SLICE_ELEMS) // n)
    return [slice(a, min(B, a + step)) for a in range(0, B, step)]


def first_minimum(d: Floats, starts: Ints) -> Ints:
    """Per segment of `d` (non-negative float32, segments beginning at `starts`), the
    position of its first smallest value, as a C scan with `if (d < best)` finds it.

    The float bits of a non-negative float order as integers, so (bits, position) packed
    in an int64 is one minimum per segment. NaN (whatever its sign bit) is never smaller."""
    bits = (d + F32(0.0)).view(np.int32).astype(np.int64)  # + 0.0 turns -0 into +0
    bits[np.isnan(d)] = 0x7FFFFFFF
    key = (bits << 32) | np.arange(d.size, dtype=np.int64)
    out: Ints = np.minimum.reduceat(key, starts) & 0xFFFFFFFF
    return out


def scale_nibbles(scales: Floats) -> tuple[Floats, Ints, Ints]:
    """The i-quants' 4-bit block scales: super-block d = max/31 and each (nb, k) block
    scale as nearest_int(0.5 * (s/d - 1)) clipped to 0..15 (uint32); ok = d != 0."""
    max_scale = scales.max(axis=1)
    d = (max_scale / F32(31.0)).astype(F32)
    ok = max_scale != 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        idv = np.where(ok, F32(1.0) / d, F32(0.0)).astype(F32)
        v = (F32(0.5) * ((idv[:, None] * scales).astype(F32) - F32(1.0))).astype(F32)
    return d, np.clip(nearest_int(v), 0, 15).astype(np.uint32), ok


def packed_scale_nibbles(scales: Floats, d_factor: F32) -> tuple[Bytes, Bytes]:
    """`scale_nibbles` as IQ2_S and IQ3_S store them: the super-block scale d * d_factor
    as fp16 bytes (nb, 2), and the (nb, k) block scales two to a byte, low nibble first
    (nb, k/2); both 0 where every block scale is 0."""
    d, ls, ok = scale_nibbles(scales)
    nibbles: Bytes = np.where(ok[:, None], ls[:, 0::2] | (ls[:, 1::2] << 4), 0)
    return fp16_bytes(np.where(ok, (d * d_factor).astype(F32), F32(0.0))), nibbles
