"""Every tensor type, byte for byte against llama.cpp's own kernels (`ggml_quantize_chunk`,
called through ctypes in the installed llama-cpp-python), with and without an importance
matrix, on synthetic edge-case weights; dequantization against gguf-py and ggml."""

from __future__ import annotations

import warnings
from pathlib import Path

import gguf
import numpy as np
import pytest

import quant
from quant import gguf_read
from quant.formats import FORMATS, TYPE_NAMES
from quant.tensor import quantize_rows

from . import ggml_ref
from .data import KINDS, edge_rows, imatrix_for

QUANTIZED = [t for t in TYPE_NAMES if FORMATS[t].quantized]
#: types ggml cannot quantize without an importance matrix (`ggml_quantize_requires_imatrix`:
#: its kernel asserts), so there is no reference without one and mfc refuses too
GGML_REQUIRES_IMATRIX = {"IQ2_XXS", "IQ2_XS", "IQ1_S"}
#: test-quantize-fns has no error bar for the 1-bit types
NO_ERROR_BAR = {"IQ1_S", "IQ1_M"}


def _first_bad_row(ours: bytes, ref: bytes, rows: int) -> int | None:
    a = np.frombuffer(ours, np.uint8).reshape(rows, -1)
    b = np.frombuffer(ref, np.uint8).reshape(rows, -1)
    bad = np.flatnonzero((a != b).any(axis=1))
    return int(bad[0]) if bad.size else None


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", TYPE_NAMES)
@pytest.mark.parametrize("seed", range(len(KINDS)), ids=KINDS)
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["ref", "imatrix"])
def test_quantize_matches_ggml(type_name: str, seed: int, with_imatrix: bool) -> None:
    n = 512
    x = edge_rows(seed, n)
    im = imatrix_for(seed, n) if with_imatrix else None
    if im is None and type_name in GGML_REQUIRES_IMATRIX:
        with pytest.raises(quant.QuantError, match="importance matrix"):
            quantize_rows(FORMATS[type_name], x, im)
        return
    with np.errstate(all="ignore"):
        ours = quantize_rows(FORMATS[type_name], x, im).tobytes()
    ref = ggml_ref.quantize(type_name, x, im)
    assert len(ours) == len(ref)
    bad = _first_bad_row(ours, ref, x.shape[0])
    assert bad is None, f"{type_name} row {bad} differs from ggml_quantize_chunk"


@pytest.mark.oracle
@pytest.mark.parametrize(
    "type_name", ["Q4_K", "Q6_K", "Q3_K", "Q4_0", "IQ2_XXS", "IQ2_XS", "IQ3_XXS"]
)
def test_long_rows_in_chunks(type_name: str) -> None:
    """Rows longer than a kernel slice, and more rows than one chunk, still match."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((40, 9216)) * 0.02).astype(np.float32)
    x[rng.random(x.shape) < 0.001] *= 20  # outliers, as real weights have
    im = imatrix_for(3, 9216)
    for w in (im,) if type_name in GGML_REQUIRES_IMATRIX else (None, im):
        assert quant.quantize(type_name, x, w) == ggml_ref.quantize(type_name, x, w)


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", TYPE_NAMES)
def test_dequantize_matches_gguf_and_ggml(type_name: str) -> None:
    x = edge_rows(11, 512)
    im = imatrix_for(11, 512) if type_name in GGML_REQUIRES_IMATRIX else None
    with np.errstate(all="ignore"):
        data = quantize_rows(FORMATS[type_name], x, im).tobytes()
    ours = quant.dequantize(type_name, data, x.shape)
    qtype = gguf.GGMLQuantizationType[type_name]
    theirs = gguf.quants.dequantize(np.frombuffer(data, np.uint8), qtype).reshape(x.shape)
    c = ggml_ref.dequantize(type_name, data, x.size).reshape(x.shape)
    assert ours.dtype == np.float32
    assert np.array_equal(ours.view(np.uint32), theirs.astype(np.float32).view(np.uint32))
    assert np.array_equal(ours.view(np.uint32), c.view(np.uint32))


# test-quantize-fns.cpp's bar: ||x - dequantize(quantize(x))||_2 / n over 4096 values of
# 0.1 + 2 cos(i + offset), for each type; the threshold depends on the bit width.
ERROR_BARS = {"Q2_K": 0.0075, "Q3_K": 0.0040, "IQ3_S": 0.0040, "IQ2_S": 0.0075, "IQ3_XXS": 0.0050}


def _cos_data(offset: float, amplitude: float = 2.0) -> np.ndarray:
    i = np.arange(4096, dtype=np.float32)
    c = np.float32(amplitude) * np.cos(i + np.float32(offset))
    return (0.1 + c.astype(np.float64)).astype(np.float32)


@pytest.mark.parametrize(
    "type_name", [t for t in QUANTIZED if t not in NO_ERROR_BAR | GGML_REQUIRES_IMATRIX]
)
def test_error_bars(type_name: str) -> None:
    for offset, amplitude in ((0.0, 2.0), (1.0, 2.0), (3.0, 1.0), (4.0, 1.5)):
        x = _cos_data(offset, amplitude)
        back = quant.dequantize(type_name, quant.quantize(type_name, x), x.shape)
        err = np.sqrt(np.sum((x.astype(np.float64) - back.astype(np.float64)) ** 2)) / x.size
        assert err < ERROR_BARS.get(type_name, 0.002), f"{type_name}: total error {err}"


# ... and its dot-product bar: |vec_dot(q(a), q8(b)) - sum(a*b)| / n, with ggml's own CPU
# vec_dot and partner quantizer consuming the bytes we wrote.
DOT_BARS = {"Q2_K": 0.04, "IQ3_S": 0.04, "IQ2_S": 0.04, "IQ3_XXS": 0.04}


@pytest.mark.oracle
@pytest.mark.parametrize(
    "type_name", [t for t in QUANTIZED if t not in NO_ERROR_BAR | GGML_REQUIRES_IMATRIX]
)
def test_dot_product_error_bars(type_name: str) -> None:
    for a, b in (((0.0, 2.0), (1.0, 2.0)), ((3.0, 1.0), (4.0, 1.5))):
        x, y = _cos_data(*a), _cos_data(*b)
        exact = float(np.dot(x.astype(np.float64), y.astype(np.float64)))
        dot = ggml_ref.vec_dot(type_name, quant.quantize(type_name, x), y)
        err = abs(dot - exact) / x.size
        assert err < DOT_BARS.get(type_name, 0.02), f"{type_name}: dot product error {err}"


def test_float_types_round_trip() -> None:
    x = edge_rows(5, 256)
    assert quant.dequantize("F32", quant.quantize("F32", x), x.shape).tobytes() == x.tobytes()
    f16 = quant.dequantize("F16", quant.quantize("f16", x), x.shape)
    assert np.array_equal(f16, x.astype(np.float16).astype(np.float32))


def test_bad_input_is_a_quant_error() -> None:
    x = np.ones((2, 300), dtype=np.float32)
    with pytest.raises(quant.QuantError, match="blocks of 256"):
        quant.quantize("Q4_K", x)
    with pytest.raises(quant.QuantError, match="unknown tensor type"):
        quant.quantize("Q7_K", x)
    y = np.ones((2, 256), dtype=np.float32)
    y[1, 17] = np.nan
    with pytest.raises(quant.QuantError, match=r"'blk\.0\.ffn_up\.weight'.*non-finite") as info:
        quant.quantize("Q4_K", y, tensor="blk.0.ffn_up.weight")
    assert info.value.tensor == "blk.0.ffn_up.weight"
    with pytest.raises(quant.QuantError, match="importance matrix has 3 values"):
        quant.quantize("Q4_K", y, np.ones(3))
    with pytest.raises(quant.QuantError, match="does not fit F16"):
        quant.quantize("F16", np.full((1, 32), 1e6, dtype=np.float32))
    with pytest.raises(quant.QuantError, match="not 512 values"):
        quant.dequantize("Q8_0", b"\0" * 33, (512,))


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", ["IQ2_XXS", "IQ2_XS", "IQ3_XXS"])
def test_lattice_iquants_on_real_weights(
    type_name: str, smollm2_f32_2304: Path, imatrix_dir: Path
) -> None:
    """SmolLM2's attention weights with its measured imatrix (the whole-file tests cost
    many minutes for these types): byte for byte as ggml_quantize_chunk."""
    im = quant.load_imatrix(imatrix_dir / "smollm2-2304.imatrix.gguf")
    seen = []
    with gguf_read.GGUFFile(smollm2_f32_2304) as g:
        for t in g.tensors:
            if t.name in ("blk.7.attn_q.weight", "blk.7.attn_k.weight"):
                seen.append(t.name)
                w = g.read(t, 0, t.n_elements * 4).view(np.float32).reshape(t.nrows, t.ne[0])
                weights = im.get(t.name)
                assert weights is not None
                assert quant.quantize(type_name, w, weights) == ggml_ref.quantize(
                    type_name, w, weights
                ), t.name
    assert len(seen) == 2


@pytest.mark.oracle
@pytest.mark.parametrize("type_name", QUANTIZED)
def test_vanishing_magnitudes_match_ggml_without_warnings(type_name: str) -> None:
    """Rows from 1e-30 down to float32's smallest subnormals: the scales overflow to inf or
    vanish as in C, and numpy says nothing (a user would see its RuntimeWarnings on stderr)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((16, 512)) * (10.0 ** -np.arange(30, 46))[:, None]).astype(np.float32)
    im = imatrix_for(5, 512)
    for w in (im,) if type_name in GGML_REQUIRES_IMATRIX else (None, im):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = quantize_rows(FORMATS[type_name], x, w).tobytes()
        assert _first_bad_row(ours, ggml_ref.quantize(type_name, x, w), x.shape[0]) is None
