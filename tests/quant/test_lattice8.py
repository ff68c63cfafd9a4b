"""The eight-coordinate lattice tables (IQ2_S, IQ1_S/IQ1_M) against `iq2xs_init_impl`'s rule
written out per tuple: sort the grid by (squared distance, index) and keep the points at the
first `nwant` distinct distances; and the grids against ggml-common.h's value tables."""

from __future__ import annotations

import numpy as np
import pytest

from quant.lattice8 import KMAP_SIZE, Lattice8, iq1_lattice, iq2s_lattice


def _neighbours_by_rule(lat: Lattice8, u: int, nwant: int) -> list[int]:
    pos = 2 * ((u >> (2 * np.arange(8))) & 3) + 1
    d2 = ((lat.values.astype(np.int64) - pos) ** 2).sum(axis=1).tolist()
    order = sorted(range(len(d2)), key=lambda j: (d2[j], j))
    kept, distinct, last = [], 0, None
    for j in order:
        if d2[j] != last:
            if distinct == nwant:
                break
            distinct, last = distinct + 1, d2[j]
        kept.append(j)
    return kept


@pytest.mark.parametrize(("name", "nwant"), [("iq2s", 1), ("iq1", 3)])
def test_neighbour_tables_follow_ggml_rule(name: str, nwant: int) -> None:
    lat = iq2s_lattice() if name == "iq2s" else iq1_lattice()
    off = np.flatnonzero(lat.index < 0)
    rng = np.random.default_rng(3)
    for u in [int(off[0]), int(off[-1]), *rng.choice(off, 40, replace=False).tolist()]:
        got = lat.flat[lat.start[u] : lat.start[u] + lat.count[u]].tolist()
        assert got == _neighbours_by_rule(lat, u, nwant), u
    on = np.flatnonzero(lat.index >= 0)
    assert lat.count[on].sum() == 0
    assert lat.index.size == KMAP_SIZE


def test_grids_match_ggml_value_tables() -> None:
    # ggml-common.h spells IQ2_S's levels 0, 1, 2 as 8, 25, 43 and IQ1's as -1, 0, 1
    assert iq2s_lattice().values.shape == (1024, 8)
    assert iq1_lattice().values.shape == (2048, 8)
    # first and last entries of iq2s_grid / iq1s_grid, as their hex literals spell them
    first2s, last2s = 0x0808080808080808, 0x2B2B2B2B2B2B2B2B
    first1, last1 = 0xFFFFFFFFFFFFFFFF, 0x0101010101010101
    mag2 = np.array([8, 25, 43])
    for idx, want in ((0, first2s), (1023, last2s)):
        lv = (iq2s_lattice().values[idx].astype(np.int64) - 1) // 2
        assert int.from_bytes(bytes(mag2[lv].tolist()), "little") == want
    for idx, want in ((0, first1), (2047, last1)):
        lv = (iq1_lattice().values[idx].astype(np.int64) - 1) // 2
        assert int.from_bytes((lv - 1).astype(np.int8).tobytes(), "little") == want
