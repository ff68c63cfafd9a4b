"""Search tables of the 8-coordinate 2-bit lattices of IQ2_XXS and IQ2_XS, derived from
their grids as `iq2xs_init_impl` derives them, and ggml's search for a group's best grid
point (`iq2_find_best_neighbour`).

A group of eight levels l (value 2l+1) packs into a 16-bit key, 2 bits per coordinate.
The quantizers only look up keys whose levels are all at most 2 (they clamp to kMaxQ-1),
so neighbours are derived for those keys only: the grid points at the `nwant` smallest
distinct squared distances, ordered by (distance, index), as ggml's qsort orders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from quant.lattice8_grids import KGRID_2BIT_256, KGRID_2BIT_512
from quant.lattice_search import candidate_runs, level_terms, neighbours_by_distance
from quant.numerics import Floats, Ints, first_minimum

_NCOORD = 8
_NLEVEL = 4
_SHIFTS = 2 * np.arange(_NCOORD)


@dataclass(frozen=True)
class Lattice2:
    values: npt.NDArray[np.int8]  # (grid, 8): the odd values 2l+1 of each point
    index: npt.NDArray[np.int32]  # (4**8,): grid index of a key, -1 off the grid
    #: the neighbours of key u are flat[start[u] : start[u] + count[u]]
    flat: npt.NDArray[np.int32]
    start: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]  # 0 on the grid and for keys with a level 3
    #: the key of each neighbour in `flat` (its levels, 2 bits per coordinate)
    flat_keys: npt.NDArray[np.int32]


def _build(kgrid: tuple[int, ...], nwant: int) -> Lattice2:
    k = np.array(kgrid, dtype=np.int64)
    levels = (k[:, None] >> _SHIFTS) & 3  # (grid, 8)
    values = (2 * levels + 1).astype(np.int8)
    index = np.full(_NLEVEL**_NCOORD, -1, dtype=np.int32)
    index[k] = np.arange(k.size, dtype=np.int32)
    keys = np.arange(_NLEVEL**_NCOORD)
    tuples = (keys[:, None] >> _SHIFTS) & 3
    wanted = keys[(tuples <= 2).all(axis=1) & (index < 0)]
    pos = 2 * tuples[wanted] + 1
    order, rank = neighbours_by_distance(values, pos)
    keep = rank < nwant
    count = np.zeros(keys.size, dtype=np.int64)
    count[wanted] = keep.sum(axis=1)
    start = np.zeros(keys.size, dtype=np.int64)
    start[wanted] = np.concatenate([[0], np.cumsum(keep.sum(axis=1))[:-1]])
    flat = order[keep].astype(np.int32)
    return Lattice2(values, index, flat, start, count, k[flat].astype(np.int32))


@cache
def iq2xxs_lattice() -> Lattice2:
    """The 256-point lattice of IQ2_XXS (two neighbour distances)."""
    return _build(KGRID_2BIT_256, 2)


@cache
def iq2xs_lattice() -> Lattice2:
    """The 512-point lattice of IQ2_XS (two neighbour distances)."""
    return _build(KGRID_2BIT_512, 2)


def group_keys(L: Ints) -> Ints:
    """Keys of level groups: L (8, G...) -> (G...)."""
    keys: Ints = (L << _SHIFTS.reshape((8,) + (1,) * (L.ndim - 1))).sum(axis=0)
    return keys


def best_neighbour(lat: Lattice2, u: Ints, xg: Floats, wg: Floats, scale: Floats) -> Ints:
    """`iq2_find_best_neighbour` for keys u (G,) off the grid: the grid index minimising
    sum_i w_i (scale*q_i - x_i)^2, summed in C order, first of equals; xg and wg (G, 8).

    Each term depends on one coordinate's level only, so the 4 possible terms per
    coordinate are computed once per group; the candidates of all groups are one flat
    list, whose keys say which term of each coordinate to add."""
    terms = level_terms(scale, xg, wg, _NLEVEL)
    counts, starts, at = candidate_runs(lat.count, lat.start, u)
    keys = lat.flat_keys[at]
    owner = np.repeat(
        np.arange(0, u.size * _NCOORD * _NLEVEL, _NCOORD * _NLEVEL, dtype=np.int32), counts
    )
    d2 = terms[owner + (keys & 3)]
    for i in range(1, _NCOORD):  # C order: d2 += term of coordinate i
        d2 += terms[(owner + _NLEVEL * i) + ((keys >> (2 * i)) & 3)]
    first = first_minimum(d2, starts)
    best: Ints = lat.flat[at[first]]
    return best


def grid_levels(lat: Lattice2, grid: Ints) -> Ints:
    """Levels (8, G...) of grid points (G...)."""
    lv: Ints = np.moveaxis((lat.values[grid].astype(np.int64) - 1) // 2, -1, 0)
    return lv
