"""`IMATRIX` in a Modelfile: the importance matrix QUANTIZE uses, given as a file or as
calibration text that the build turns into one (cached by digest).

The oracle is the two-step path a user takes by hand, which other tests hold to llama.cpp:
`mfc imatrix` (= llama-imatrix) then `mfc quantize --imatrix` (= llama_model_quantize). A
Modelfile build must give the very same quantized layer, compute nothing on a rebuild, and
leave no blob behind once the model is removed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import quant
from toolchain.build import build_modelfile
from toolchain.build.errors import BuildError
from toolchain.frontend.check import check_source
from toolchain.frontend.parse import load_modelfile
from toolchain.store import Store, parse_name

ROOT = Path(__file__).resolve().parents[3]
MODEL = "application/vnd.ollama.image.model"


def mfc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.fixture(scope="module")
def f32_gguf(smollm2_gguf: Path) -> Path:
    return smollm2_gguf.parents[1] / "smollm2-f32" / "SmolLM2-135M-F32.gguf"


def _build(store: Store, folder: Path, text: str, name: str = "imx") -> str:
    mf_path = folder / "Modelfile"
    mf_path.write_text(text)
    result = build_modelfile(store, parse_name(name), load_modelfile(mf_path))
    (layer,) = [la for la in result.manifest.layers if la.media_type == MODEL]
    return layer.digest


@pytest.mark.slow
@pytest.mark.oracle
def test_calibration_text_builds_what_the_manual_path_makes(f32_gguf: Path, tmp_path: Path) -> None:
    text = tmp_path / "calibration.txt"
    text.write_text((ROOT / "README.md").read_text()[:20000])  # > 2 contexts of 512 tokens
    matrix = tmp_path / "manual.imatrix.gguf"
    res = mfc("imatrix", f32_gguf, "--data", text, "-o", matrix)
    assert res.returncode == 0, res.stderr
    manual = tmp_path / "manual.gguf"
    quant.quantize_file(f32_gguf, manual, "Q4_K_M", imatrix=matrix)
    plain = tmp_path / "plain.gguf"
    quant.quantize_file(f32_gguf, plain, "Q4_K_M")
    assert manual.read_bytes() != plain.read_bytes()  # the imatrix changes the bytes

    store = Store(tmp_path / "models")
    modelfile = f"FROM {f32_gguf}\nQUANTIZE q4_K_M\nIMATRIX calibration.txt\n"
    digest = _build(store, tmp_path, modelfile)
    assert store.blobs.path(digest).read_bytes() == manual.read_bytes()
    entries = {e.pass_name: e for e in store.cache.entries()}
    assert set(entries) == {"imatrix", "quantize"}
    assert entries["quantize"].options["imatrix"] == entries["imatrix"].digest
    # the computed matrix is the manual one (its dataset name aside, which quantize ignores)
    ours = quant.load_imatrix(store.blobs.path(entries["imatrix"].digest))
    assert ours.digest == quant.load_imatrix(matrix).digest

    # a rebuild computes nothing and writes nothing; the file route gives the same layer
    before = sorted(p.name for p in store.blobs.dir.iterdir())
    assert _build(store, tmp_path, modelfile) == digest
    assert sorted(p.name for p in store.blobs.dir.iterdir()) == before
    by_file = f"FROM {f32_gguf}\nQUANTIZE Q4_K_M\nIMATRIX manual.imatrix.gguf\n"
    assert _build(store, tmp_path, by_file, "imx2") == digest

    # removing both models leaves no blob behind: the F32 copy, the matrix, the output
    for name in ("imx", "imx2"):
        res = mfc("rm", name, "--models", store.root)
        assert res.returncode == 0, res.stderr
    assert not [p for p in store.blobs.dir.iterdir() if p.name.startswith("sha256-")]


def test_a_type_that_needs_a_matrix_without_one_is_refused(tmp_path: Path, tiny_dir: Path) -> None:
    text = f"FROM {tiny_dir / 'tiny.gguf'}\nQUANTIZE q2_K_S\n"
    _, diags = check_source(text, "Modelfile")
    assert [(d.severity, d.message) for d in diags] == [
        ("error", "quantization type q2_K_S needs an importance matrix")
    ]
    store = Store(tmp_path / "models")
    with pytest.raises(BuildError, match="Q2_K_S needs an importance matrix"):
        _build(store, tmp_path, text)
    assert not store.root.exists() or not any(store.blobs.dir.glob("sha256-*"))


def test_imatrix_problems_are_reported(tmp_path: Path, tiny_dir: Path, f32_gguf: Path) -> None:
    _, diags = check_source(f"FROM {tiny_dir / 'tiny.gguf'}\nIMATRIX cal.txt\n", "Modelfile")
    assert [(d.severity, d.message) for d in diags] == [
        ("warning", "IMATRIX has no effect without QUANTIZE")
    ]
    store = Store(tmp_path / "models")
    with pytest.raises(BuildError, match=r"IMATRIX file not found: .*missing\.txt"):
        _build(store, tmp_path, f"FROM {tiny_dir}/tiny.gguf\nQUANTIZE q4_0\nIMATRIX missing.txt")
    # calibration text too short for two contexts: the build says so and writes no model
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(BuildError, match=r"IMATRIX short\.txt: the text tokenizes to"):
        _build(store, tmp_path, f"FROM {f32_gguf}\nQUANTIZE q4_0\nIMATRIX short.txt\n")
    assert not any((store.root / "manifests").rglob("*"))
    assert not any(store.blobs.dir.glob("sha256-*"))
