"""Bad inputs: a one-line error naming the problem, exit 1, and the store left byte-for-byte
as it was (every file and folder under the store root hashed before and after)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.tiny_gguf import write_tiny_model
from tests.toolchain.build.conftest import tree_digest


def mfc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """A store holding one model, and the bad inputs next to it."""
    d = tmp_path_factory.mktemp("bad")
    (d / "good").mkdir()
    (d / "good" / "Modelfile").write_text(f"FROM {tiny_dir / 'tiny.gguf'}\nSYSTEM hi\n")
    (d / "notgguf.gguf").write_text("this is not a model\n")
    data = (tiny_dir / "tiny.gguf").read_bytes()
    (d / "truncated.gguf").write_bytes(data[: len(data) - 40])  # tensor data cut short
    (d / "header-cut.gguf").write_bytes(data[:100])  # ends inside the metadata
    write_tiny_model(d / "model-as-adapter.gguf", seed=7)
    result = mfc("build", "good/Modelfile", "--models", "store", cwd=d)
    assert result.returncode == 0, result.stderr
    # what a killed writer left: only a build that writes clears it, a rejected one doesn't
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (d / "store" / ".mfc" / "tmp" / f"{dead}-leftover.partial").write_bytes(b"half")
    return d


CASES = {
    "missing-file": ("FROM ./missing.gguf\n", [], "neither a file nor a valid model name"),
    "missing-adapter": ("FROM {tiny}\nADAPTER ./nope.gguf\n", [], "ADAPTER file not found"),
    "not-gguf": ("FROM ./notgguf.gguf\n", [], "not a GGUF file"),
    "truncated": ("FROM ./truncated.gguf\n", [], "truncated GGUF"),
    "header-cut": ("FROM ./header-cut.gguf\n", [], "truncated GGUF"),
    "name-dotdot": ("FROM {tiny}\n", ["-t", "../x"], "invalid model name"),
    "name-deep": ("FROM {tiny}\n", ["-t", "a/b/c/d/e"], "invalid model name"),
    "name-empty-tag": ("FROM {tiny}\n", ["-t", "m:"], "invalid model name"),
    "unknown-base": ("FROM no-such-model:v1\n", [], "base model 'no-such-model:v1' not found"),
    "adapter-not-lora": (
        "FROM {tiny}\nADAPTER ./model-as-adapter.gguf\n",
        [],
        "is not a LoRA adapter (general.type is 'model')",
    ),
    "unknown-quantize": (
        "FROM {tiny}\nQUANTIZE q9_K\n",
        [],
        "unsupported quantization type 'q9_K'",
    ),
    "unknown-quantize-folder": (  # a float-looking type is not a float the converter writes
        "FROM {folder}\nQUANTIZE bf17\n",
        [],
        "unsupported quantization type 'bf17'",
    ),
    "unknown-quantize-flag": (
        "FROM {tiny}\n",
        ["--quantize", "q9"],
        "unsupported quantization type 'q9'",
    ),
    "bad-template": ('FROM {tiny}\nTEMPLATE "{{{{ .Prompt "\n', [], "unclosed action"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_leaves_store_unchanged(
    case: str, workspace: Path, tiny_dir: Path, tiny_models_dir: Path
) -> None:
    text, args, expected = CASES[case]
    folder = workspace / f"case-{case}"
    folder.mkdir(exist_ok=True)
    (folder / "Modelfile").write_text(
        text.format(tiny=tiny_dir / "tiny.gguf", folder=tiny_models_dir / "tiny-llama")
    )
    # relative paths in the Modelfile are relative to its folder: link the inputs in
    for name in ("notgguf.gguf", "truncated.gguf", "header-cut.gguf", "model-as-adapter.gguf"):
        if not (folder / name).exists():
            (folder / name).symlink_to(workspace / name)
    before = tree_digest(workspace / "store")
    result = mfc("build", f"case-{case}/Modelfile", *args, "--models", "store", cwd=workspace)
    assert result.returncode == 1, result.stderr
    errors = [
        line
        for line in result.stderr.splitlines()
        if " error: " in line or line.startswith("error:")
    ]
    assert errors, result.stderr
    assert expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(workspace / "store") == before
