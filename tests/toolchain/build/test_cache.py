"""The build cache's accounting: keys from the passes, `mfc cache`, `mfc prune`, `mfc rm`.

A safetensors folder built with QUANTIZE leaves an F16 intermediate no manifest references;
these tests pin who owns it: the cache while its model exists, nobody once it is removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.tiny_gguf import write_tiny_model
from toolchain.build import CreateRequest, SourceDir, build
from toolchain.build import convert as convert_pass
from toolchain.build import quantize as quantize_pass
from toolchain.build.cache import cache_key
from toolchain.build.convert import folder_digest
from toolchain.cli import main
from toolchain.progress import ProgressEvent
from toolchain.store import Store, parse_name
from toolchain.store.errors import StoreBusyError


class FakeQuantizer:
    """Stands in for the kernels (what they compute is tested in quant/): a Q4_K_M GGUF."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, src: Path, dst: Path, target: str, progress: Any, imatrix: Path | None = None
    ) -> None:
        self.calls += 1
        write_tiny_model(dst, file_type=15, seed=99)
        progress(1.0)


@pytest.fixture
def fake_quant(monkeypatch: pytest.MonkeyPatch) -> FakeQuantizer:
    fake = FakeQuantizer()
    monkeypatch.setattr(quantize_pass, "run_quantizer", fake)
    return fake


@pytest.fixture
def folder(tiny_models_dir: Path) -> Path:
    return tiny_models_dir / "tiny-llama"


def request(folder: Path, quantize: str = "q4_K_M") -> CreateRequest:
    return CreateRequest(convert_dirs=(SourceDir(folder),), quantize=quantize)


def mfc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out + err


def blobs(store: Store) -> set[str]:
    return set(store.blobs.digests())


def test_keys_come_from_the_passes(store: Store, folder: Path, fake_quant: FakeQuantizer) -> None:
    build(store, parse_name("q"), request(folder))
    entries = {e.pass_name: e for e in store.cache.entries()}
    conv, quant = entries["convert"], entries["quantize"]
    assert conv.version == convert_pass.PASS.version
    assert quant.version == quantize_pass.PASS.version
    assert conv.input == folder_digest(folder)
    assert quant.input == conv.digest  # the F16 the quantize pass read
    assert quant.options == {"type": "Q4_K_M"}
    assert quant.key == cache_key(
        conv.digest, "quantize", quantize_pass.PASS.version, {"type": "Q4_K_M"}
    )
    assert store.cache.states(store.cache.entries(), store.referenced_digests()) == {
        conv.key: "cache",
        quant.key: "model",
    }


def test_bumping_a_pass_version_misses(
    store: Store, folder: Path, fake_quant: FakeQuantizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(store, parse_name("q"), request(folder))
    monkeypatch.setattr(
        quantize_pass,
        "PASS",
        quantize_pass.Pass("quantize", quantize_pass.VERSION + 1, quantize_pass.run),
    )
    build(store, parse_name("q"), request(folder))
    assert fake_quant.calls == 2  # a new version is a new key
    passes = sorted((e.pass_name, e.version) for e in store.cache.entries())
    v = quantize_pass.VERSION
    assert passes == [("convert", 1), ("quantize", v), ("quantize", v + 1)]


def test_rm_of_the_only_model_empties_the_store(
    store: Store, folder: Path, fake_quant: FakeQuantizer, capsys: pytest.CaptureFixture[str]
) -> None:
    first = build(store, parse_name("q"), request(folder))
    f16 = next(e.digest for e in store.cache.entries() if e.pass_name == "convert")
    assert f16 in blobs(store) and f16 not in first.manifest.digests()
    again = build(store, parse_name("q"), request(folder))  # a rebuild: all cache hits
    assert again.digest == first.digest and again.new_blobs == () and fake_quant.calls == 1
    sizes = {d: store.blobs.size(d) for d in blobs(store)}
    code, out = mfc(capsys, "rm", "q", "--models", str(store.root), "--json")
    assert code == 0
    doc = json.loads(out)
    assert sorted(doc["removed_blobs"]) == sorted(sizes) and doc["freed"] == sum(sizes.values())
    assert blobs(store) == set() and store.cache.entries() == []


def test_rm_keeps_what_another_model_uses(
    store: Store, folder: Path, fake_quant: FakeQuantizer
) -> None:
    build(store, parse_name("q"), request(folder))
    plain = build(store, parse_name("f16"), CreateRequest(convert_dirs=(SourceDir(folder),)))
    store.delete(parse_name("q"))
    assert plain.manifest.digests() <= blobs(store)
    assert [e.pass_name for e in store.cache.entries()] == ["convert"]


def test_prune_keeps_live_intermediates_and_removes_the_rest(
    store: Store, folder: Path, fake_quant: FakeQuantizer, capsys: pytest.CaptureFixture[str]
) -> None:
    build(store, parse_name("q"), request(folder))
    before = blobs(store)
    stray = store.blobs.write_bytes(b"uploaded, never used").digest
    code, out = mfc(capsys, "prune", "--models", str(store.root), "--json")
    assert code == 0 and json.loads(out)["removed_blobs"] == [stray]
    assert blobs(store) == before and len(store.cache.entries()) == 2
    # an orphan (its model removed behind mfc's back, e.g. by ollama rm) is garbage
    store.manifest_path(parse_name("q")).unlink()
    code, out = mfc(capsys, "prune", "--models", str(store.root), "--json")
    assert code == 0 and blobs(store) == set() and store.cache.entries() == []


def test_cache_lists_and_prunes(
    store: Store, folder: Path, fake_quant: FakeQuantizer, capsys: pytest.CaptureFixture[str]
) -> None:
    build(store, parse_name("q"), request(folder))
    models = ("--models", str(store.root))
    code, out = mfc(capsys, "cache", *models, "--json")
    doc = json.loads(out)
    conv = next(e for e in doc["entries"] if e["pass"] == "convert")
    assert code == 0 and conv["state"] == "cache"
    assert doc["size"] == conv["size"] == store.blobs.size(conv["digest"])
    assert {e["state"] for e in doc["entries"]} == {"cache", "model"}
    code, out = mfc(capsys, "cache", *models)
    assert code == 0 and out.startswith("KEY") and "quantize v1" in out and "type=Q4_K_M" in out

    # not old enough: nothing goes; made 8 days old: the F16 goes, the model's blob stays
    code, out = mfc(capsys, "cache", "prune", "--older-than", "7d", *models, "--json")
    assert json.loads(out)["evicted"] == 0 and conv["digest"] in blobs(store)
    old = time.time() - 8 * 86400
    for e in store.cache.entries():
        os.utime(store.cache.path(e.key), (old, old))
    code, out = mfc(capsys, "cache", "prune", "--older-than", "7d", *models, "--json")
    assert code == 0 and json.loads(out)["evicted"] == 1
    assert json.loads(out)["freed"] == conv["size"] and conv["digest"] not in blobs(store)
    assert store.verify() == []
    assert [e.pass_name for e in store.cache.entries()] == ["quantize"]

    code, out = mfc(capsys, "cache", "prune", "--max-size", "ten", *models)
    assert code == 2 and "invalid size 'ten'" in out


def test_size_cap_after_each_build(
    store: Store, folder: Path, fake_quant: FakeQuantizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFC_BUILD_CACHE_MAX_SIZE", "0")
    built = build(store, parse_name("q"), request(folder))
    assert blobs(store) == built.manifest.digests()  # no F16 left behind
    monkeypatch.setenv("MFC_BUILD_CACHE_MAX_SIZE", "10G")
    build(store, parse_name("q2"), request(folder, "q8_0"))
    assert len(blobs(store) - store.referenced_digests()) == 1  # this time the F16 stays


def test_prune_and_cache_prune_wait_for_a_running_build(
    store: Store, folder: Path, fake_quant: FakeQuantizer
) -> None:
    """While a build holds the store (the F16 is written, no manifest names it yet), prune
    and cache prune wait; after it, neither removes anything the model needs."""
    store.root.mkdir(parents=True)
    busy: list[str] = []
    results: dict[str, Any] = {}
    threads: list[threading.Thread] = []

    def during(event: ProgressEvent) -> None:
        if not event.status.startswith("quantizing") or threads:
            return
        try:
            store.collect_garbage(wait=False)
        except StoreBusyError as exc:
            busy.append(exc.message)
        for name, call in (
            ("prune", store.collect_garbage),
            ("cache", lambda: store.evict_cache(max_size=0)),
        ):
            t = threading.Thread(target=lambda n=name, c=call: results.__setitem__(n, c()))
            t.start()
            threads.append(t)
        time.sleep(0.2)  # give them a chance to (wrongly) run now

    built = build(store, parse_name("q"), request(folder), progress=during)
    for t in threads:
        t.join(timeout=30)
    assert busy and len(threads) == 2 and set(results) == {"prune", "cache"}
    assert built.manifest.digests() <= blobs(store) and store.verify() == []
    assert results["prune"].blobs == []


def test_cli_prune_in_another_process_waits_for_the_build(
    store: Store, folder: Path, fake_quant: FakeQuantizer
) -> None:
    """`mfc prune` and `mfc cache prune` started while a build quantizes (flock held shared
    by this process) are still waiting when the quantizer runs; they finish after it."""
    store.root.mkdir(parents=True)
    procs: list[subprocess.Popen[str]] = []
    waiting: list[bool] = []
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}

    def during(event: ProgressEvent) -> None:
        if not event.status.startswith("quantizing") or procs:
            return
        for args in (["prune"], ["cache", "prune", "--max-size", "0"]):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from toolchain.cli import main; main()",
                        *args,
                        "--models",
                        str(store.root),
                        "--json",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        for p in procs:  # each says it waits before blocking on the lock ("" if it ended)
            assert p.stderr is not None
            said = p.stderr.readline()
            waiting.append("waiting for another mfc process" in said and p.poll() is None)

    built = build(store, parse_name("q"), request(folder), progress=during)
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert waiting == [True, True]
    assert outs[0]["removed_blobs"] == [] and outs[1]["evicted"] == 1  # only the F16
    assert built.manifest.digests() <= blobs(store) and store.verify() == []
