"""`mfc imatrix` against llama.cpp's own `llama-imatrix` (built from the vendored sources):
the same entries, counts and chunk numbers, and sums equal within 1e-4 relative."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

import quant

ROOT = Path(__file__).resolve().parents[2]
CTX, CHUNKS = 128, 3


def mfc(*args: str | Path | float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    r = gguf.GGUFReader(path)
    tensors = {t.name: np.array(t.data, dtype=np.float32).reshape(-1) for t in r.tensors}
    kv = {k: r.fields[k].contents() for k in ("imatrix.chunk_count", "imatrix.chunk_size")}
    return tensors, kv


@pytest.mark.slow
@pytest.mark.oracle
def test_imatrix_matches_llama_imatrix(
    llama_tools: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    _compare_with_llama_imatrix(llama_tools, smollm2_gguf, tmp_path, CTX, 30 * 7)


@pytest.mark.oracle
def test_imatrix_of_a_tiny_model_matches_llama_imatrix(
    llama_tools: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    """A 2-layer llama with 64-wide rows, converted by mfc at F32: chunks of 64 tokens."""
    from toolchain.convert.convert import convert_hf_dir

    model = tmp_path / "tiny-llama-f32.gguf"
    convert_hf_dir(tiny_models_dir / "tiny-llama", model, "f32")
    _compare_with_llama_imatrix(llama_tools, model, tmp_path, 64, 2 * 7)


def _compare_with_llama_imatrix(
    llama_tools: Path, model: Path, tmp_path: Path, ctx: int, entries: int
) -> None:
    text = ROOT / "README.md"
    theirs_path = tmp_path / "llama.imatrix.gguf"
    subprocess.run(
        [
            str(llama_tools / "llama-imatrix"),
            "-m",
            str(model),
            "-f",
            str(text),
            "-o",
            str(theirs_path),
            "-c",
            str(ctx),
            "-b",
            str(ctx),
            "--chunks",
            str(CHUNKS),
            "-t",
            "2",
            "-fa",
            "on",
            "--no-ppl",
        ],
        capture_output=True,
        check=True,
        timeout=600,
    )
    ours_path = tmp_path / "ours.imatrix.gguf"
    res = mfc(
        "imatrix",
        model,
        "--data",
        text,
        "-o",
        ours_path,
        "--ctx",
        ctx,
        "--chunks",
        CHUNKS,
        "--threads",
        2,
        "--json",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["chunks"] == CHUNKS and summary["entries"] == entries

    ours, our_kv = _read(ours_path)
    theirs, their_kv = _read(theirs_path)
    assert our_kv == their_kv == {"imatrix.chunk_count": CHUNKS, "imatrix.chunk_size": ctx}
    assert sorted(ours) == sorted(theirs)
    for name, want in theirs.items():
        if name.endswith(".counts"):
            assert ours[name].tolist() == want.tolist(), name
        else:
            np.testing.assert_allclose(ours[name], want, rtol=1e-4, err_msg=name)

    # what quantize reads from it: sums / counts, the same as from llama-imatrix's file
    a, b = quant.load_imatrix(ours_path).entries, quant.load_imatrix(theirs_path).entries
    assert sorted(a) == sorted(b)
