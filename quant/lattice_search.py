"""The trial-scale search the lattice i-quants share (IQ2_XXS/XS in `quant.iquant2`, IQ2_S
in `quant.iquant2s`, IQ3_S/XXS in `quant.iquant3s`), after llama.cpp's
`quantize_row_iq2_xs_impl` and its siblings: round the magnitudes at a trial scale to odd
levels, fit the scale to them by weighted least squares, keep the best trial per column
(a negative one's sign moves into the sign bits); and the neighbour lists a group off
the lattice is snapped from (built once per lattice, searched per group). Every step in
float32 and C order, as ggml computes it."""

from __future__ import annotations

import numpy as np

from quant.numerics import F32, Bytes, Floats, Ints, nearest_int, safe_div, seq_sum


def round_levels(idv: Floats, xval: Floats, kmax: int) -> Ints:
    """`MAX(0, MIN(kmax-1, nearest_int(0.5f*(id*xval - 1))))`, elementwise."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = (F32(0.5) * ((idv * xval).astype(F32) - F32(1.0))).astype(F32)
    levels: Ints = np.clip(nearest_int(v), 0, kmax - 1)
    return levels


def odd_level_sums(W: Floats, xval: Floats, L: Ints) -> tuple[Floats, Floats]:
    """Per column, sum(w*x*q) and sum(w*q*q) for the odd values q = 2L+1 (`L` shaped like
    `W`): the least-squares scale is their ratio."""
    q = (2 * L + 1).astype(F32)
    wq = (W * xval).astype(F32)
    return seq_sum((wq * q).astype(F32)), seq_sum(((W * q).astype(F32) * q).astype(F32))


class BestTrial:
    """The best trial so far per column: llama.cpp's `if (sumq2 > 0 && sumqx*sumqx >
    best*sumq2)` taking scale = sumqx/sumq2, the trial's levels (..., B) and which of its
    groups (G, B) were on the lattice."""

    def __init__(self, scale: Floats, L: Ints, on_grid: Ints) -> None:
        self.scale, self.L, self.on_grid = scale, L, on_grid
        self.best = np.zeros(scale.shape[0], dtype=F32)

    def offer(self, L: Ints, on_grid: Ints, sumqx: Floats, sumq2: Floats) -> None:
        """A trial's levels, lattice flags and sums (`odd_level_sums`)."""
        with np.errstate(over="ignore", invalid="ignore"):
            better = (sumq2 > 0) & ((sumqx * sumqx).astype(F32) > (self.best * sumq2).astype(F32))
        if better.any():
            self.scale = np.where(better, safe_div(sumqx, sumq2), self.scale).astype(F32)
            self.best = np.where(better, self.scale * sumqx, self.best).astype(F32)
            self.L = np.where(better[None, None, :], L, self.L)
            self.on_grid = np.where(better[None, :], on_grid, self.on_grid)


def sign_bytes(X: Floats, scale: Floats) -> tuple[Bytes, Floats]:
    """The sign bits of each column of `X` (n, B), eight to a byte (bit i of byte k:
    element 8k + i), inverted where the best scale came out negative; and |scale|."""
    neg = (X < 0).reshape(-1, 8, X.shape[1])
    signs = np.packbits(neg, axis=1, bitorder="little").reshape(-1, X.shape[1]).astype(np.uint8)
    flip = scale < 0
    signs[:, flip] = ~signs[:, flip]
    return signs, np.abs(scale).astype(F32)


def level_terms(scale: Floats, xg: Floats, wg: Floats, levels: int) -> Floats:
    """The terms w*(scale*q - x)^2 of each group's (G, k) coordinates at every odd value
    q = 1, 3, ..., 2*levels-1, flat in (group, coordinate, level) order: a candidate
    neighbour's distance is the sum of its coordinates' terms (`iq*_find_best_neighbour`)."""
    odd = (2 * np.arange(levels) + 1).astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = ((scale[:, None, None] * odd).astype(F32) - xg[:, :, None]).astype(F32)
        terms: Floats = ((wg[:, :, None] * diff).astype(F32) * diff).astype(F32).reshape(-1)
    return terms


def candidate_runs(count: Ints, start: Ints, u: Ints) -> tuple[Ints, Ints, Ints]:
    """The neighbour lists of the off-lattice keys `u` laid end to end, from a lattice's
    per-key `count` and `start` in its flat list: each key's run length and where it starts,
    and each candidate's position in the flat list."""
    counts = count[u]
    ends = np.cumsum(counts)
    starts = ends - counts
    at = np.arange(int(ends[-1]), dtype=np.int32)
    at += np.repeat((start[u] - starts).astype(np.int32), counts)
    return counts, starts, at


def neighbours_by_distance(values: Ints, pos: Ints) -> tuple[Ints, Ints]:
    """For each tuple of `pos` (T, k), every grid point of `values` (P, k) ordered by
    squared distance (ties by point index), and the rank of each one's distance among the
    row's distinct distances: llama.cpp keeps the points of the first few ranks as a
    tuple's neighbours (`iq2_init_impl`, `iq3_init_impl`)."""
    d2 = ((values[None, :, :].astype(np.int32) - pos[:, None, :]) ** 2).sum(axis=2)
    order: Ints = np.argsort(d2 * values.shape[0] + np.arange(values.shape[0]), axis=1)
    sorted_d2 = np.take_along_axis(d2, order, axis=1)
    rank: Ints = np.concatenate(
        [
            np.zeros((d2.shape[0], 1), dtype=np.int64),
            np.cumsum(np.diff(sorted_d2, axis=1) > 0, axis=1),
        ],
        axis=1,
    )
    return order, rank
