"""Importance matrices: llama.cpp's GGUF format and the legacy .dat, read as llama-quantize
reads them (sums / counts, ncall), and refused clearly when they are not imatrices."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

import quant
from quant.imatrix import load_imatrix, write_imatrix_dat, write_imatrix_gguf


def test_gguf_imatrix_is_sums_over_counts(imatrix_dir: Path) -> None:
    path = imatrix_dir / "smollm2.imatrix.gguf"
    im = load_imatrix(path)
    reader = gguf.GGUFReader(path)  # an independent reading of the same file
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
    assert len(im.entries) == 211 and im.chunk_count >= 1
    assert im.datasets == ("mfc-fixture-prompts.txt",)
    for name, values in im.entries.items():
        count = np.float32(round(float(tensors[name + ".counts"][0])))
        assert np.array_equal(values, tensors[name + ".in_sum2"] / count)


def test_dat_imatrix_is_values_over_ncall(imatrix_dir: Path) -> None:
    path = imatrix_dir / "smollm2.imatrix.dat"
    data = path.read_bytes()
    im = load_imatrix(path)
    (n,) = struct.unpack_from("<i", data, 0)
    pos = 4
    for _ in range(n):
        (length,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4 : pos + 4 + length].decode()
        ncall, nval = struct.unpack_from("<ii", data, pos + 4 + length)
        pos += 12 + length
        stored = np.frombuffer(data, "<f4", nval, pos)
        pos += 4 * nval
        assert np.array_equal(im.entries[name], stored / np.float32(ncall))
    gguf_im = load_imatrix(path.with_suffix(".gguf"))
    for name, values in im.entries.items():
        np.testing.assert_allclose(values, gguf_im.entries[name], rtol=1e-6)


def test_writers_round_trip(tmp_path: Path) -> None:
    sums = {"blk.0.ffn_down.weight": np.arange(1, 9, dtype=np.float32).reshape(2, 4)}
    counts = {"blk.0.ffn_down.weight": np.array([2.0, 0.0], dtype=np.float32)}
    write_imatrix_gguf(
        tmp_path / "a.gguf", sums, counts, datasets=["d"], chunk_count=3, chunk_size=512
    )
    im = load_imatrix(tmp_path / "a.gguf")
    # the second expert has no data: llama-quantize uses 1 there
    assert im.entries["blk.0.ffn_down.weight"].tolist() == [0.5, 1, 1.5, 2, 1, 1, 1, 1]
    assert (im.datasets, im.chunk_count) == (("d",), 3)
    write_imatrix_dat(
        tmp_path / "a.dat",
        {"x.weight": np.array([0.25, 4.0], np.float32)},
        {"x.weight": 3},
        chunk_count=3,
        dataset="d",
    )
    dat = load_imatrix(tmp_path / "a.dat")
    assert dat.entries["x.weight"].tolist() == [0.25, 4.0]
    assert (dat.datasets, dat.chunk_count) == (("d",), 3)
    assert dat.digest != im.digest


def test_bad_imatrix_files(tmp_path: Path, smollm2_gguf: Path) -> None:
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x05\x00\x00\x00not an imatrix at all")
    with pytest.raises(quant.QuantError, match="not an imatrix file"):
        load_imatrix(junk)
    with pytest.raises(quant.QuantError, match="no imatrix metadata"):
        load_imatrix(smollm2_gguf)  # a model, not an imatrix
    with pytest.raises(quant.QuantError, match="cannot read imatrix"):
        load_imatrix(tmp_path / "missing.gguf")
    nan = tmp_path / "nan.dat"
    write_imatrix_dat(
        nan,
        {"x.weight": np.array([np.nan], np.float32)},
        {"x.weight": 1},
        chunk_count=1,
        dataset="d",
    )
    with pytest.raises(quant.QuantError, match="non-finite"):
        load_imatrix(nan)
