"""Files mfc writes: never over one of its own inputs, always with the umask's mode, and a
temp file a killed writer left is removed by the next writer of the same target."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures.local_server import ROOT, mfc_command
from fixtures.tiny_gguf import write_tiny_model
from quant.files import file_mode, remove_stale_temps, temp_path


def mfc(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mfc_command(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        umask=umask,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hf_copy(tmp_path: Path, tiny_models_dir: Path) -> Path:
    d = tmp_path / "hf"
    shutil.copytree(tiny_models_dir / "tiny-llama", d)
    return d


@pytest.fixture
def tiny_f32(tmp_path: Path) -> Path:
    return write_tiny_model(tmp_path / "tiny-f32.gguf", file_type=0, n_embd=64)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_convert_refuses_to_overwrite_its_input(hf_copy: Path, name: str) -> None:
    before = {p.name: digest(p) for p in hf_copy.iterdir()}
    done = mfc("convert", str(hf_copy), str(hf_copy / name))
    assert done.returncode == 1, done.stderr
    assert "is an input of this conversion" in done.stderr and "Traceback" not in done.stderr
    assert {p.name: digest(p) for p in hf_copy.iterdir()} == before  # nothing added either


def test_convert_into_its_input_folder_twice(hf_copy: Path) -> None:
    for _ in range(2):  # the first output is not an input of the second conversion
        done = mfc("convert", str(hf_copy), str(hf_copy / "model.gguf"))
        assert done.returncode == 0, done.stderr


def test_convert_refuses_a_hard_link_to_its_input(hf_copy: Path, tmp_path: Path) -> None:
    link = tmp_path / "weights.gguf"
    os.link(hf_copy / "model.safetensors", link)
    done = mfc("convert", str(hf_copy), str(link))
    assert done.returncode == 1 and "is an input of this conversion" in done.stderr, done.stderr


def test_quantize_refuses_a_hard_link_to_its_input_or_imatrix(
    tiny_f32: Path, tmp_path: Path
) -> None:
    link = tmp_path / "same.gguf"
    os.link(tiny_f32, link)
    before = digest(tiny_f32)
    done = mfc("quantize", str(tiny_f32), str(link), "q8_0")
    assert done.returncode == 1 and "is the input file" in done.stderr, done.stderr
    assert digest(tiny_f32) == before


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_have_the_umask_mode(
    hf_copy: Path, tiny_f32: Path, tmp_path: Path, umask: int
) -> None:
    want = 0o666 & ~umask
    out = tmp_path / "out"
    out.mkdir()
    done = mfc("convert", str(hf_copy), str(out / "converted.gguf"), umask=umask)
    assert done.returncode == 0, done.stderr
    done = mfc("quantize", str(tiny_f32), str(out / "quantized.gguf"), "q8_0", umask=umask)
    assert done.returncode == 0, done.stderr
    store = tmp_path / "models"
    (tmp_path / "Modelfile").write_text(f"FROM {tiny_f32}\nSYSTEM hi\n")
    done = mfc("build", str(tmp_path / "Modelfile"), "-t", "m", "--models", str(store), umask=umask)
    assert done.returncode == 0, done.stderr
    done = mfc("export", "m", "-o", str(out / "m.tar"), "--models", str(store), umask=umask)
    assert done.returncode == 0, done.stderr
    written = [
        *out.iterdir(),
        *(store / "blobs").iterdir(),
        *(p for p in (store / "manifests").rglob("*") if p.is_file()),
    ]
    assert len(written) >= 7
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        p.name: oct(want) for p in written
    }


def test_file_mode_reads_the_umask() -> None:
    old = os.umask(0o027)
    try:
        assert file_mode() == 0o640
    finally:
        os.umask(old)


def test_stale_temps_of_dead_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    gone = subprocess.Popen(["true"])  # a pid that has exited
    gone.wait()
    stale = tmp_path / f".model.gguf.{gone.pid}.0a1b2c3d.tmp"
    legacy = tmp_path / f".model.gguf.{gone.pid}.tmp"  # what quantize used to name it
    live = temp_path(target)  # ours: this process is alive
    other = tmp_path / f".other.gguf.{gone.pid}.tmp"  # another target's: not judged here
    foreign = tmp_path / ".model.gguf.notapid.tmp"
    for p in (stale, legacy, other, foreign):
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(target)) == sorted([stale, legacy])
    assert live.exists() and other.exists() and foreign.exists()
    assert live.name.startswith(f".model.gguf.{os.getpid()}.")
