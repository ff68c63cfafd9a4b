"""Search tables of an eight-coordinate lattice (IQ2_S, IQ1_S, IQ1_M), derived from its grid
as `iq2xs_init_impl` derives them: the points' values, a map from every 8-tuple of 2-bit
levels (packed two bits a coordinate) to its grid index (or none), and for each tuple off the
grid its neighbours, the points at the `nwant` smallest distinct squared distances, ordered
by (distance, index).

Distances come from one integer matrix product per slab of tuples, |p|^2 + |g|^2 - 2 p.g,
and only the few kept neighbours are sorted, so building the IQ1 tables (43692 tuples by
2048 points) takes well under a second instead of one sort per tuple."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from quant.lattice8_grids import KGRID_1BIT_2048, KGRID_2BIT_1024

#: tuples ggml maps (`kmap_size`): every packing of levels 0..2, the largest being 0xAAAA
KMAP_SIZE = 43692
_SHIFTS = 2 * np.arange(8)


@dataclass(frozen=True)
class Lattice8:
    values: npt.NDArray[np.int8]  # (grid, 8): the odd values 2l+1 of each point
    levels4: npt.NDArray[np.int64]  # (8, grid): 4*i + l of coordinate i (a term's offset)
    index: npt.NDArray[np.int32]  # (KMAP_SIZE,): grid index of a level tuple, -1 off it
    #: the neighbours of tuple u are flat[start[u] : start[u] + count[u]]
    flat: npt.NDArray[np.int32]
    start: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]  # 0 for tuples on the grid


def pack(levels: npt.NDArray[np.int64], axis: int) -> npt.NDArray[np.int64]:
    """The tuple index of 8 levels along `axis` (coordinate i in bits 2i, 2i+1)."""
    shape = [1] * levels.ndim
    shape[axis] = 8
    packed: npt.NDArray[np.int64] = (levels.astype(np.int64) << _SHIFTS.reshape(shape)).sum(
        axis=axis
    )
    return packed


def _neighbours(
    pos: npt.NDArray[np.int64], values: npt.NDArray[np.int64], nwant: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, point) pairs of the kept neighbours of a slab of off-grid tuples, row-major
    and within a row by (distance, point)."""
    d2 = (
        (pos * pos).sum(axis=1)[:, None]
        + (values * values).sum(axis=1)[None, :]
        - 2 * (pos @ values.T)
    )
    bound = d2.min(axis=1)
    big = np.iinfo(np.int64).max
    for _ in range(nwant - 1):
        above = np.where(d2 > bound[:, None], d2, big).min(axis=1)
        bound = np.where(above < big, above, bound)
    rows, cols = np.nonzero(d2 <= bound[:, None])
    order = np.lexsort((cols, d2[rows, cols], rows))
    return rows[order], cols[order]


def _build(kgrid: tuple[int, ...], nwant: int) -> Lattice8:
    k = np.array(kgrid, dtype=np.int64)
    levels = (k[:, None] >> _SHIFTS) & 3
    values = 2 * levels + 1
    index = np.full(KMAP_SIZE, -1, dtype=np.int32)
    index[k] = np.arange(k.size, dtype=np.int32)
    off = np.flatnonzero(index < 0)
    count = np.zeros(KMAP_SIZE, dtype=np.int64)
    flat = []
    slab = 2048
    for a in range(0, off.size, slab):
        u = off[a : a + slab]
        pos = 2 * ((u[:, None] >> _SHIFTS) & 3) + 1
        rows, cols = _neighbours(pos, values, nwant)
        count[u] = np.bincount(rows, minlength=u.size)
        flat.append(cols)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    levels4 = np.ascontiguousarray((4 * np.arange(8) + levels).T.astype(np.int64))
    return Lattice8(
        values.astype(np.int8), levels4, index, np.concatenate(flat).astype(np.int32), start, count
    )


def nearest(
    lat: Lattice8, u: npt.NDArray[np.int64], terms: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """For each group g off the lattice (tuple u[g]), the first of its neighbours with the
    smallest distance, a distance being the float sum, coordinate after coordinate, of
    `terms[g, 4*i + level]` (terms: (G, 32), a group's weighted squared differences per
    coordinate and level). The neighbours of all groups are one flat list, reduced per
    group."""
    counts = lat.count[u]
    ends = np.cumsum(counts)
    starts = ends - counts
    owner = np.repeat(np.arange(u.size) * 32, counts)
    at = np.arange(int(ends[-1])) + np.repeat(lat.start[u] - starts, counts)
    cand = lat.flat[at]
    idx = lat.levels4[:, cand]
    idx += owner
    g = terms.reshape(-1)[idx]
    d2 = g[0].copy()  # not np.add.reduce: with one candidate numpy would sum pairwise
    for i in range(1, 8):
        d2 += g[i]
    low = np.minimum.reduceat(d2, starts)
    first = np.where(d2 == np.repeat(low, counts), np.arange(cand.size), cand.size)
    best: npt.NDArray[np.int64] = cand[np.minimum.reduceat(first, starts)]
    return best


@cache
def iq2s_lattice() -> Lattice8:
    """The 1024-point lattice of IQ2_S (the nearest distance only)."""
    return _build(KGRID_2BIT_1024, 1)


@cache
def iq1_lattice() -> Lattice8:
    """The 2048-point lattice of IQ1_S and IQ1_M (three neighbour distances)."""
    return _build(KGRID_1BIT_2048, 3)
