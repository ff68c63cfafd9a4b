"""The coordinate descent of `make_q3_quants` / `make_qp_quants` (quant/descent.py), which
jumps from one change to the next instead of stepping through elements, byte for byte
against llama.cpp's Q3_K and Q2_K kernels on blocks that stress it: many changes per
pass, a block whose descent C stops at its fifth pass, values whose new level comes from
ggml's nearest_int on huge quotients (tiny, subnormal, lone large values), heavy tails."""

from __future__ import annotations

import numpy as np
import pytest

import quant
from quant import descent
from quant.numerics import F32
from quant.search import make_q3_quants

from . import ggml_ref

#: a 16-value sub-block (float32 bits) whose levels still change in C's fifth pass, and
#: would again in a sixth that C does not run
FIVE_PASSES = [
    3209106811, 3229109590, 3207649033, 1054654249, 3217795487, 3220514711, 1076354035,
    1053804046, 3227749110, 1075616050, 1062195491, 1081330090, 3220273853, 3214239872,
    1054357958, 3225661316,
]  # fmt: skip


def _rows(kind: str, rng: np.random.Generator) -> np.ndarray:
    shape = (32, 1024)
    if kind == "normal":
        return (rng.standard_normal(shape) * 0.02).astype(F32)
    if kind == "heavy":
        return rng.standard_t(1.5, shape).astype(F32)
    if kind == "lognormal":
        x = np.exp(rng.standard_normal(shape) * 3) * np.sign(rng.standard_normal(shape))
        return x.astype(F32)
    if kind == "tiny":  # products of x*x*x near and below the smallest normal float
        return (rng.standard_normal(shape) * 3e-15).astype(F32)
    if kind == "lone-large":  # one value per sub-block far above the others
        x = (rng.standard_normal(shape) * 0.02).astype(F32)
        x[:, ::16] *= F32(1e6)
        return x
    if kind == "five-passes":  # the block above, scaled and mirrored, among normal ones
        x = (rng.standard_normal(shape) * 0.02).astype(F32)
        block = np.array(FIVE_PASSES, dtype=np.uint32).view(F32)
        for i, s in enumerate((1.0, 0.5, 3e-3, -1.0)):
            x[i, 16 * i : 16 * i + 16] = block * F32(s)
        return x
    raise AssertionError(kind)


KINDS = ["normal", "heavy", "lognormal", "tiny", "lone-large", "five-passes"]


@pytest.mark.oracle
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("type_name", "with_imatrix"), [("Q3_K", False), ("Q2_K", True)])
def test_descent_matches_ggml(kind: str, type_name: str, with_imatrix: bool) -> None:
    """Q3_K without an imatrix runs the descent on its sub-blocks (make_q3_quants), Q2_K
    with one on its sub-block scales (make_qp_quants)."""
    rng = np.random.default_rng(KINDS.index(kind))
    x = _rows(kind, rng)
    im = (np.abs(rng.standard_normal(x.shape[1])) + 0.01).astype(F32) if with_imatrix else None
    with np.errstate(all="ignore"):
        ours = quant.quantize(type_name, x, im)
    assert ours == ggml_ref.quantize(type_name, x, im)


def test_the_fifth_pass_block_needs_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """FIVE_PASSES does change in a sixth pass, so the test above checks C's cap."""
    X = np.ascontiguousarray(np.array(FIVE_PASSES, dtype=np.uint32).view(F32)[:, None])
    capped = make_q3_quants(X.copy(), 4)[1]
    monkeypatch.setattr(descent, "_PASSES", 6)
    assert not np.array_equal(capped, make_q3_quants(X.copy(), 4)[1])


def test_no_blocks() -> None:
    scale, levels = make_q3_quants(np.zeros((16, 0), dtype=F32), 4)
    assert scale.shape == (0,) and levels.shape == (16, 0)
