"""The store's upkeep around the server: unreferenced blobs pruned when `mfc serve` starts
(as the reference's server does, unless MFC_NOPRUNE/OLLAMA_NOPRUNE) and by `mfc prune`;
digest and origin patterns that take no trailing newline; create errors that name the
request's files, not the server's temp folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from fixtures.local_server import ROOT, local_server, mfc_command
from fixtures.tiny_gguf import write_tiny_model
from runtime.app import origin_pattern
from toolchain.store import Store, is_digest
from toolchain.store.blobs import is_canonical_digest, parse_digest
from toolchain.store.errors import BlobError


def mfc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mfc_command(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def littered_store(tmp_path: Path) -> tuple[Store, str, str]:
    """A store with one model, one blob nobody references (an upload whose create never
    came), a temp file of a dead writer and an empty manifest folder. Returns the store,
    the model's GGUF digest and the orphan's digest."""
    gguf = write_tiny_model(tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text(f"FROM {gguf}\n")
    store = Store(tmp_path / "models")
    done = mfc("build", str(tmp_path / "Modelfile"), "-t", "kept", "--models", str(store.root))
    assert done.returncode == 0, done.stderr
    kept = store.read_manifest("kept").layers[0].digest
    orphan = store.blobs.write_bytes(b"uploaded, never used").digest
    old = time.time() - 7200  # older than any grace period
    os.utime(store.blobs.path(orphan), (old, old))
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.blobs.tmp_dir.mkdir(parents=True, exist_ok=True)
    (store.blobs.tmp_dir / f"{gone.pid}-abc.partial").write_bytes(b"half")
    (store.manifests_dir / "registry.ollama.ai" / "library" / "removed").mkdir(parents=True)
    return store, kept, orphan


def test_prune_command(littered_store: tuple[Store, str, str]) -> None:
    store, kept, orphan = littered_store
    done = mfc("prune", "--models", str(store.root), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["removed_blobs"] == [orphan]
    assert report["freed"] == len(b"uploaded, never used")
    assert report["temp_files"] == 1 and report["folders"] == 1
    assert store.blobs.digests() == sorted(store.read_manifest("kept").digests())
    assert kept in store.blobs.digests()
    assert list(store.blobs.tmp_dir.iterdir()) == []
    assert not (store.manifests_dir / "registry.ollama.ai" / "library" / "removed").exists()
    assert store.verify() == []
    again = mfc("prune", "--models", str(store.root))
    assert again.returncode == 0 and again.stdout.startswith("removed 0 unused blob(s)")


def test_prune_of_a_store_that_does_not_exist(tmp_path: Path) -> None:
    done = mfc("prune", "--models", str(tmp_path / "nothing"))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("env", [{}, {"MFC_NOPRUNE": "1"}, {"OLLAMA_NOPRUNE": "true"}])
def test_server_prunes_at_start(
    littered_store: tuple[Store, str, str], env: dict[str, str]
) -> None:
    store, kept, orphan = littered_store
    with local_server(
        {"MFC_MODELS": str(store.root), "MFC_NOPRUNE": "", "OLLAMA_NOPRUNE": "", **env},
        output=subprocess.DEVNULL,
    ) as url:
        assert httpx.get(url + "/api/tags").status_code == 200
    assert kept in store.blobs.digests()
    assert (orphan in store.blobs.digests()) == bool(env)


def test_server_start_does_not_wait_for_a_busy_store(
    littered_store: tuple[Store, str, str],
) -> None:
    store, _, orphan = littered_store
    with (
        store.shared_lock(),
        local_server(
            {"MFC_MODELS": str(store.root), "MFC_NOPRUNE": "", "OLLAMA_NOPRUNE": ""},
            output=subprocess.DEVNULL,
        ) as url,
    ):
        assert httpx.get(url + "/api/version").status_code == 200
    assert orphan in store.blobs.digests()  # skipped, not waited for


def test_digests_take_no_trailing_newline() -> None:
    hexd = "a" * 64
    for good in (f"sha256:{hexd}", f"sha256-{hexd}", f"sha256:{hexd.upper()}"):
        assert is_digest(good)
    for bad in (f"sha256:{hexd}\n", f"sha256-{hexd}\n", f"\nsha256:{hexd}", f"sha256:{hexd} "):
        assert not is_digest(bad)
        with pytest.raises(BlobError):
            parse_digest(bad)
    assert is_canonical_digest(f"sha256:{hexd}")
    assert not is_canonical_digest(f"sha256:{hexd}\n")


def test_origins_take_no_trailing_newline() -> None:
    allowed = origin_pattern(("http://example.com",))
    assert allowed.match("http://example.com")
    assert not allowed.match("http://example.com\n")


def test_create_errors_name_the_request_files(tmp_path: Path) -> None:
    store = tmp_path / "models"
    with local_server({"MFC_MODELS": str(store)}, output=subprocess.DEVNULL) as url:
        files = {}
        for name, data in (
            ("config.json", b'{"architectures": ["LlamaForCausalLM"]}'),
            ("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00not json"),
        ):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert httpx.post(f"{url}/api/blobs/{digest}", content=data).status_code == 201
            files[name] = digest
        r = httpx.post(
            url + "/api/create", json={"model": "x", "files": files, "stream": False}, timeout=60
        )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("model.safetensors: "), error
    assert ".mfc" not in error and str(store) not in error


def test_prune_waits_for_a_build_holding_the_store(
    littered_store: tuple[Store, str, str],
) -> None:
    store, _, orphan = littered_store
    with store.shared_lock():  # what a build or pull holds until its manifest is written
        proc = subprocess.Popen(
            [*mfc_command(), "prune", "--models", str(store.root)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        assert "waiting for another mfc process" in proc.stderr.readline()
        assert proc.poll() is None and orphan in store.blobs.digests()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.startswith("removed 1 unused blob(s)")
    assert orphan not in store.blobs.digests()
