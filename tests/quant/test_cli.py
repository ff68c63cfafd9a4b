"""`mfc quantize`: the short form, --json, and every bad input giving a clear error, exit 1
(2 for usage) and no file left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from toolchain.cli.quantize import default_output

from .data import synthetic_model


def mfc(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolchain.cli import main; main()",
            "quantize",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny-F32.gguf"
    synthetic_model(path, tied=True)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_short_form_writes_beside_the_input(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "tiny-F32.gguf"
    shutil.copy(model, src)
    done = mfc(src, "q4_k_m", "--threads", "1")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "tiny-Q4_K_M.gguf"
    assert out.exists()
    assert str(out) in done.stdout
    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.file_type").contents() == 15
    assert _leftovers(tmp_path) == []


def test_json_progress_and_result(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "q8.gguf"
    done = mfc(model, out, "Q8_0", "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert all("status" in line for line in lines)
    progress = [line for line in lines[:-1] if "total" in line]
    assert progress and progress[-1]["completed"] == progress[-1]["total"] == out.stat().st_size
    assert lines[-1]["status"] == "success" and lines[-1]["output"] == str(out)
    # blk.1.attn_q has rows of 80, which no 32-block divides: F16 (as llama.cpp does)
    assert lines[-1]["tensor_types"] == {"F32": 5, "Q8_0": 14, "F16": 1}


def test_default_output_names() -> None:
    known = ("F16", "F32", "Q4_K_M", "Q8_0")
    assert default_output(Path("m/model.gguf"), "Q4_K_M", known) == Path("m/model-Q4_K_M.gguf")
    assert default_output(Path("model-f16.gguf"), "Q8_0", known) == Path("model-Q8_0.gguf")
    assert default_output(Path("model.F32.gguf"), "Q8_0", known) == Path("model-Q8_0.gguf")


def _fails(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_not_a_gguf(tmp_path: Path) -> None:
    src = tmp_path / "notes.gguf"
    src.write_text("hello, I am not a model\n" * 10)
    _fails(mfc(src, tmp_path / "out.gguf", "q4_0"), 1, "notes.gguf: not a GGUF file")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out.gguf").exists()


def test_truncated_file(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "cut.gguf"
    src.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    _fails(mfc(src, tmp_path / "out.gguf", "q4_0"), 1, "truncated")
    src.write_bytes(model.read_bytes()[:200])  # cut inside the header
    _fails(mfc(src, tmp_path / "out.gguf", "q4_0"), 1, "truncated")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.gguf"]


def test_unknown_type_is_a_usage_error(model: Path, tmp_path: Path) -> None:
    _fails(mfc(model, tmp_path / "out.gguf", "q7_k"), 2, "unknown quantization type", "Q4_K_M")
    _fails(mfc(model), 2, "expected IN.gguf [OUT.gguf] TYPE")


def test_nan_weight_names_the_tensor(tmp_path: Path) -> None:
    src = tmp_path / "nan.gguf"
    synthetic_model(src, tied=True)
    reader = gguf.GGUFReader(src, "r+")
    tensor = next(t for t in reader.tensors if t.name == "blk.1.ffn_up.weight")
    tensor.data[3, 7] = np.nan
    reader.data.flush()
    del reader
    _fails(mfc(src, tmp_path / "out.gguf", "q4_K_M"), 1, "'blk.1.ffn_up.weight'", "non-finite")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out.gguf").exists()


def test_missing_output_folder(model: Path, tmp_path: Path) -> None:
    _fails(mfc(model, tmp_path / "nope" / "out.gguf", "q8_0"), 1, "does not exist")
    assert not (tmp_path / "nope").exists()
    (tmp_path / "taken").mkdir()
    _fails(mfc(model, tmp_path / "taken", "q8_0"), 1, "it is a folder")
    assert _leftovers(tmp_path) == []


def test_quantized_input_needs_allow_requantize(tmp_path: Path, smollm2_gguf: Path) -> None:
    out = tmp_path / "out.gguf"
    _fails(mfc(smollm2_gguf, out, "q8_0"), 1, "already quantized", "--allow-requantize")
    assert not out.exists()


def test_bad_imatrix_file(model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.imatrix"
    bad.write_bytes(b"\x00\x00\x00\x00")
    _fails(mfc(model, tmp_path / "out.gguf", "q4_K_M", "--imatrix", bad), 1, "not an imatrix")
    assert not (tmp_path / "out.gguf").exists()
