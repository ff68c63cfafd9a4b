"""Crash safety and concurrency of `mfc build` on the real 98 MB demo GGUF.

- 20 builds killed with SIGKILL at random points: no partial blob or manifest is ever
  visible (every blob's bytes match its name, every manifest parses and its blobs exist),
  and the next build succeeds and cleans up what the killed ones left.
- Two builds into one store at the same time both succeed and the store verifies.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolchain.store import Store

pytestmark = pytest.mark.slow

TRIALS = 20


def start(modelfile: Path, store: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from toolchain.cli import main; main()",
            "build",
            str(modelfile),
            "-t",
            name,
            "--models",
            str(store),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def assert_consistent(root: Path) -> None:
    """What a reader (mfc or Ollama) can see is complete: blobs match their names,
    manifests parse and reference blobs that exist."""
    blobs = root / "blobs"
    if blobs.is_dir():
        for path in blobs.iterdir():
            assert path.name.startswith("sha256-") and len(path.name) == 71, path.name
            h = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            assert h.hexdigest() == path.name[7:], f"partial blob {path.name}"
    manifests = root / "manifests"
    if manifests.is_dir():
        for path in manifests.rglob("*"):
            if path.is_file():
                doc = json.loads(path.read_bytes())  # a partial manifest would not parse
                for layer in [doc["config"], *doc["layers"]]:
                    assert (blobs / layer["digest"].replace(":", "-")).is_file()


@pytest.fixture
def demo(tmp_path: Path, smollm2_gguf: Path) -> Path:
    d = tmp_path / "demo"
    d.mkdir()
    (d / "Modelfile").write_text(f'FROM {smollm2_gguf}\nSYSTEM "crash test"\nPARAMETER top_k 7\n')
    return d / "Modelfile"


def test_sigkill_at_random_points(demo: Path, tmp_path: Path) -> None:
    store = tmp_path / "models"
    rng = random.Random(1234)
    # a timed build: when does it start writing blobs, and when is the manifest written?
    t0 = time.monotonic()
    full = start(demo, store, "timing")
    assert full.stdout is not None
    marks: dict[str, float] = {}
    for line in full.stdout:
        status = json.loads(line).get("status", "")
        key = status.split()[0] if status.startswith(("hashing", "copying")) else status
        marks.setdefault(key, time.monotonic() - t0)
    assert full.wait(timeout=300) == 0
    duration = time.monotonic() - t0
    writing = marks["success"] - marks["copying"]  # copying the GGUF, then the small blobs
    killed = mid_write = 0
    for trial in range(TRIALS):
        # start from a store without the model so every trial has blobs to copy and write
        s = Store(store)
        for name in s.names():
            s.delete(name)
        s.remove_unreferenced(s.blobs.digests())  # complete blobs a killed build left behind
        tmp = store / ".mfc" / "tmp"
        temps_before = set(tmp.iterdir()) if tmp.is_dir() else set()
        proc = start(demo, store, f"t{trial}")
        if trial % 2:  # anywhere in the build
            time.sleep(rng.uniform(0.0, duration))
        else:  # anywhere once it has started writing to the store
            assert proc.stdout is not None
            for line in proc.stdout:
                if json.loads(line).get("status", "").startswith("copying"):
                    break
            time.sleep(rng.uniform(0.0, writing))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        killed += code == -signal.SIGKILL
        mid_write += bool(set(tmp.iterdir()) - temps_before)  # killed while writing a file
        assert_consistent(store)
    print(f"{killed}/{TRIALS} killed, {mid_write} while writing a blob or manifest")
    assert killed >= TRIALS // 2  # most trials really were killed mid-build
    assert mid_write >= TRIALS // 4  # and many inside the write window this test is about
    final = start(demo, store, "final")
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    assert Store(store).verify() == []
    assert not list((store / ".mfc" / "tmp").iterdir()), "stale temp files were not cleaned"


def test_two_builds_at_once(demo: Path, tmp_path: Path, smollm2_gguf: Path) -> None:
    store = tmp_path / "models"
    other = tmp_path / "other" / "Modelfile"
    other.parent.mkdir()
    other.write_text(f'FROM {smollm2_gguf}\nSYSTEM "the other one"\n')
    procs = [start(demo, store, "one"), start(other, store, "two")]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out.decode().splitlines()[-1])["model"] in ("one:latest", "two:latest")
    s = Store(store)
    assert [e.name.display() for e in s.list_models()] != []
    assert sorted(n.display() for n in s.names()) == ["one:latest", "two:latest"]
    assert s.verify() == []
    assert_consistent(store)
    # the shared GGUF is stored once
    sizes = sorted(p.stat().st_size for p in (store / "blobs").iterdir())
    assert sizes.count(smollm2_gguf.stat().st_size) == 1
