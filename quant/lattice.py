"""Search tables of a 3-bit lattice i-quant (IQ3_S, IQ3_XXS), derived from its grid as
`iq3xs_init_impl` derives them: the grid points' values, a map from every 4-tuple of
levels to its grid index (or none), and for each tuple off the grid its neighbours, the
grid points at the `nwant` smallest distinct squared distances, ordered by (distance,
index)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from quant.lattice_grids import KGRID_256, KGRID_512
from quant.lattice_search import neighbours_by_distance


@dataclass(frozen=True)
class Lattice:
    values: npt.NDArray[np.int8]  # (grid, 4): the odd values 2l+1 of each point
    levels8: npt.NDArray[np.int64]  # (grid, 4): 8*i + l of coordinate i (a term's offset)
    index: npt.NDArray[np.int32]  # (8**4,): grid index of a level tuple, -1 off the grid
    #: the neighbours of tuple u are flat[start[u] : start[u] + count[u]]
    flat: npt.NDArray[np.int32]
    start: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]  # 0 for tuples on the grid
    #: (4, len(flat)): 8*i + level of coordinate i of each neighbour, for the term gather
    flat_levels8: npt.NDArray[np.int32]


def _build(kgrid: tuple[int, ...], nwant: int) -> Lattice:
    k = np.array(kgrid, dtype=np.int32)
    levels = (k[:, None] >> (3 * np.arange(4))) & 7  # (grid, 4)
    values = (2 * levels + 1).astype(np.int8)
    index = np.full(8**4, -1, dtype=np.int32)
    index[k] = np.arange(k.size, dtype=np.int32)
    tuples = (np.arange(8**4)[:, None] >> (3 * np.arange(4))) & 7
    pos = 2 * tuples + 1
    order, rank = neighbours_by_distance(values, pos)
    keep = (rank < nwant) & (index < 0)[:, None]
    count = keep.sum(axis=1)
    start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    levels8 = (8 * np.arange(4) + levels).astype(np.int64)
    flat = order[keep].astype(np.int32)
    flat_levels8 = np.ascontiguousarray(levels8[flat].T.astype(np.int32))
    return Lattice(values, levels8, index, flat, start, count, flat_levels8)


@cache
def iq3s_lattice() -> Lattice:
    """The 512-point lattice of IQ3_S (three neighbour distances)."""
    return _build(KGRID_512, 3)


@cache
def iq3xxs_lattice() -> Lattice:
    """The 256-point lattice of IQ3_XXS (two neighbour distances)."""
    return _build(KGRID_256, 2)
