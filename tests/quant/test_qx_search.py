"""`make_qx_quants`' fast paths (quant/qx_search.py), byte for byte against llama.cpp's kernels:
the x clamp that stands in for the level clamp, the einsum sums, and the slicing, on blocks
built to sit on their edges (level ties in every trial, +-max ties, the clamp bounds,
all-equal, zero, tiny, huge and subnormal values)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import quant
import quant.qx_search as search
from quant.numerics import F32, row_buffers, seq_dot, seq_dot_fused, seq_sum

from . import ggml_ref
from .data import imatrix_for

# llama.cpp's make_qx_quants callers: Q3_K (nmax 4, and 32 over its scales), Q4_0/Q5_0 with
# an imatrix (8, 16), Q6_K (32)
NMAX = (4, 8, 16, 32)


def _levels_by_clip(x: np.ndarray, isc: np.float32, nmax: int) -> np.ndarray:
    levels: np.ndarray = np.clip(np.rint(x * isc), -nmax, nmax - 1)
    return levels


@pytest.mark.parametrize("nmax", NMAX)
def test_clamping_x_clamps_the_levels(nmax: int) -> None:
    """For every trial of each group, nearest_int(isc * clamp(x)) equals C's clamped level,
    for u = |x|/|max| swept densely and on every rounding edge of every trial."""
    t = np.abs(search._qx_numerators(nmax))
    edges = [(h + 0.5) / t for h in range(nmax + 1)]  # u*t on a half-integer
    u = np.concatenate([np.linspace(0, 1, 20001), *edges, [1.0]]).astype(F32)
    u = np.unique(np.concatenate([u, np.nextafter(u, F32(0)), np.nextafter(u, F32(2))]))
    u = u[(u >= 0) & (u <= 1)]
    for a in (F32(1e-15), F32(3.7e-3), F32(1.0), F32(3e4)):
        for sign in (F32(1.0), F32(-1.0)):
            mx = sign * a
            # both sides of the block: the max's side (x = u*mx) and the opposite one
            x = np.concatenate([u * mx, -u * mx]).astype(F32)
            for trials, opposite, same in search._qx_clamps(nmax):
                lower, upper = (-opposite * a, same * a) if mx > 0 else (-same * a, opposite * a)
                xc = np.minimum(np.maximum(x, lower), upper)
                for k in range(trials.start, trials.stop):
                    isc = F32(search._qx_numerators(nmax)[k] / mx)
                    ours = np.rint(xc * isc)
                    assert np.array_equal(ours, _levels_by_clip(x, isc, nmax)), (a, sign, k)


def test_einsum_sums_follow_c_order() -> None:
    """seq_dot equals the product pass and the row-after-row sum, bit for bit, whatever the
    layout; einsum is only trusted on C-ordered arrays (on an F-ordered one its inner loop
    would be the summed axis)."""
    rng = np.random.default_rng(3)
    for cols in (1, 2, 15, 16, 17, 177, 2048):
        a, b, c = (
            (rng.standard_normal((16, cols)) * rng.choice([1e-20, 1.0, 3e4], (16, cols))).astype(
                F32
            )
            for _ in range(3)
        )
        for fa, fb, fc in ((a, b, c), (np.asfortranarray(a), np.asfortranarray(b), c)):
            out = np.empty(cols, dtype=F32)
            assert np.array_equal(seq_dot(fa, fb, out=out), seq_sum(a * b))
            assert np.array_equal(seq_dot(fa, fb, fc, out=out), seq_sum(a * b * c))
        assert seq_dot_fused(a, b) == (cols >= 16)
        assert not seq_dot_fused(np.asfortranarray(a), b)
    # the fancy index that once fed einsum an F-ordered array
    x = rng.standard_normal((16, 300)).astype(F32)
    picked = x[:, np.flatnonzero(rng.random(300) < 0.5)]
    assert not picked.flags.c_contiguous
    assert not seq_dot_fused(picked, picked)


def test_row_buffers_sets_and_restores_numpys_buffer_size() -> None:
    """The trial passes run with numpy's buffer size at the slice's width (a multiple of 16,
    as numpy 1.x requires), and leave it as it was, after an error too."""
    before = np.getbufsize()
    for width, size in ((2048, 2048), (2050, 2048), (7, 16), (10**9, 1 << 20)):
        with row_buffers(width):
            assert np.getbufsize() == size
        assert np.getbufsize() == before
    with pytest.raises(ZeroDivisionError), row_buffers(512):
        _ = 1 / 0
    assert np.getbufsize() == before


def _edge_blocks(nmax: int, rng: np.random.Generator) -> np.ndarray:
    """16-value sub-blocks on the search's edges, for a search with this nmax."""
    numer = np.abs(search._qx_numerators(nmax))
    blocks = []

    def block(head: list[Any], fill: float = 0.3) -> None:
        # random values under the head's max of 1, then the head
        b = np.clip(rng.standard_normal(16) * fill, -0.9, 0.9).astype(F32)
        b[: len(head)] = head
        blocks.append(b)

    for t in numer:
        for h in range(nmax + 1):
            u = F32((h + 0.5) / t)  # u*t on a rounding edge in this trial
            if u > 1:
                continue
            for du in (np.nextafter(u, F32(0)), u, np.nextafter(u, F32(2))):
                block([1.0, du, -du, du * 0.5])
    for bound in {v for _, o, s in search._qx_clamps(nmax) for v in (o, s)}:
        for du in (np.nextafter(bound, F32(0)), bound, np.nextafter(bound, F32(2))):
            block([1.0, -du])  # the opposite side near its clamp
            block([-1.0, du])
            block([1.0, du])  # the max's side near its clamp
    for u in np.linspace(0.94, 1.0, 25):
        block([1.0, -u], fill=0.9)
        block([-u, 1.0, -1.0], fill=0.9)
    block([1.0, -1.0])  # +-max tie: the first one is the max
    block([-1.0, 1.0])
    blocks.append(np.full(16, 0.75, dtype=F32))  # all equal
    blocks.append(np.full(16, -2.5, dtype=F32))
    blocks.append(np.zeros(16, dtype=F32))
    blocks.append(np.array([0.0, -0.0] * 8, dtype=F32))
    blocks.append(np.full(16, 2e-15, dtype=F32))  # just above GROUP_MAX_EPS
    blocks.append(np.full(16, 9e-16, dtype=F32))  # just under: an all-zero block
    blocks.append((rng.standard_normal(16) * 1e-38).astype(F32))  # subnormal
    sub = (rng.standard_normal(16) * 0.1).astype(F32)
    sub[3:9] = np.array([1e-40, -3e-42, 1e-45, 0, 5e-39, -1e-38], dtype=F32)
    blocks.append(sub)  # subnormals among normal values
    wide = (rng.standard_normal(16) * 1e-20).astype(F32)
    wide[5] = 3e4  # a huge range
    blocks.append(wide)
    blocks.append(np.array([1e4, -1e-20] * 8, dtype=F32))
    return np.concatenate(blocks)


def _rows(values: np.ndarray, rng: np.random.Generator, per_row: int = 256) -> np.ndarray:
    """`values` in rows of `per_row` after a shuffle of whole 16-value sub-blocks (so every
    edge case lands at many positions and beside many others), padded with normal values."""
    blocks = values.reshape(-1, 16)[rng.permutation(values.size // 16)]
    flat = blocks.reshape(-1)
    pad = (-flat.size) % per_row
    flat = np.concatenate([flat, (rng.standard_normal(pad) * 0.05).astype(F32)])
    return flat.reshape(-1, per_row)


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", ["Q6_K", "Q3_K", "Q4_0", "Q5_0"])
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
def test_edge_blocks_match_ggml(type_name: str, with_imatrix: bool) -> None:
    nmax = {"Q6_K": 32, "Q3_K": 4, "Q4_0": 8, "Q5_0": 16}[type_name]
    rng = np.random.default_rng(nmax)
    x = _rows(_edge_blocks(nmax, rng), rng)
    im = imatrix_for(nmax, x.shape[1]) if with_imatrix else None
    with np.errstate(all="ignore"):
        ours = quant.quantize(type_name, x, im)
    assert ours == ggml_ref.quantize(type_name, x, im)


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", ["Q6_K", "Q3_K"])
def test_many_small_slices_match_ggml(type_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 40 and 7 blocks, replay chunks of 100 (partial ones, einsum and the
    hand-made sums side by side), and single-row inputs."""
    monkeypatch.setattr(search, "QX_SLICE_ELEMS", 16 * 40)
    monkeypatch.setattr(search, "QX_REPLAY_COLS", 100)
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((9, 256 * 3)) * 0.02).astype(F32)
    x[rng.random(x.shape) < 0.01] *= 30
    for w in (None, imatrix_for(4, x.shape[1])):
        assert quant.quantize(type_name, x, w) == ggml_ref.quantize(type_name, x, w)
        assert quant.quantize(type_name, x[:1], w) == ggml_ref.quantize(type_name, x[:1], w)
    monkeypatch.setattr(search, "QX_SLICE_ELEMS", 16 * 7)
    assert quant.quantize(type_name, x) == ggml_ref.quantize(type_name, x)
