"""Blobs are written once, atomically, verified; the lock orders writers and removers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from toolchain.store import BlobError, BlobMismatchError, Store
from toolchain.store.root import store_root


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_is_content_addressed_and_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = store.blobs.write_bytes(b"hello")
    second = store.blobs.write_stream([b"hel", b"lo"])
    assert first.digest == second.digest == sha(b"hello")
    assert (first.created, second.created) == (True, False)
    path = store.blobs.path(first.digest)
    assert path.name == "sha256-" + first.digest[7:]
    assert path.stat().st_mode & 0o777 == 0o644
    assert store.blobs.verify(first.digest)
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(BlobError, match="digest mismatch"):
        store.blobs.write_stream([b"abc"], expected=sha(b"xyz"))
    assert store.blobs.digests() == []
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_staged_bytes_are_no_blob_until_committed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    staged = store.blobs.stage(iter([b"sta", b"ged"]), expected=sha(b"staged"))
    assert (staged.digest, staged.size) == (sha(b"staged"), 6)
    assert staged.path.parent == store.blobs.tmp_dir and store.blobs.digests() == []
    assert store.blobs.commit(staged).created
    assert store.blobs.digests() == [sha(b"staged")] and not staged.path.exists()
    with pytest.raises(BlobMismatchError) as caught:
        store.blobs.stage([b"abc"], expected=sha(b"xyz"))
    assert (caught.value.want, caught.value.got) == (sha(b"xyz"), sha(b"abc"))
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_adopt_hashes_and_checks_a_finished_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    fd, tmp = store.blobs.temp_file()
    os.write(fd, b"downloaded")
    os.close(fd)
    with pytest.raises(BlobMismatchError, match="digest mismatch"):
        store.blobs.adopt(tmp, expected=sha(b"what the registry promised"))
    assert not tmp.exists() and store.blobs.digests() == []  # nothing corrupt is kept
    fd, tmp = store.blobs.temp_file()
    os.write(fd, b"downloaded")
    os.close(fd)
    written = store.blobs.adopt(tmp, expected=sha(b"downloaded").upper().replace("SHA", "sha"))
    assert written.digest == sha(b"downloaded") and store.blobs.verify(written.digest)


def test_blob_files_are_told_from_other_files_by_one_rule(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.blobs.write_bytes(b"blob").digest
    path = store.blobs.path(digest)
    for other in (f"{path.name}-partial", f"{path.name}-partial-0", "sha256-123", "notes.txt"):
        (store.blobs.dir / other).write_bytes(b"x")
    assert store.blobs.digests() == [digest]
    assert store.blobs.digest_at(path) == digest
    assert store.blobs.digest_at(store.blobs.dir / f"{path.name}-partial") is None
    elsewhere = tmp_path / path.name
    elsewhere.write_bytes(b"blob")
    assert store.blobs.digest_at(elsewhere) is None  # same name, not in this store's blobs/


def test_small_files_are_replaced_whole(tmp_path: Path) -> None:
    store = Store(tmp_path)
    target = store.manifests_dir / "host" / "ns" / "model" / "tag"
    store.write_file(target, b"first")
    store.write_file(target, b"second")
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o644
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_import_detects_a_file_changed_after_hashing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    src = tmp_path / "model.gguf"
    src.write_bytes(b"version one")
    digest = sha(src.read_bytes())
    src.write_bytes(b"version two")
    with pytest.raises(BlobError, match="changed while it was being copied"):
        store.blobs.import_file(src, digest)
    assert store.blobs.digests() == []


def test_verify_finds_corruption(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = store.blobs.write_bytes(b"payload").digest
    assert store.blobs.verify(digest)
    store.blobs.path(digest).write_bytes(b"tampered")
    assert not store.blobs.verify(digest)
    assert store.verify() == [f"blob {digest} does not match its digest"]


def test_malformed_digests_are_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for bad in ("sha256:abc", "md5:" + "0" * 64, "sha256:" + "g" * 64, "../../etc/passwd"):
        with pytest.raises(BlobError, match="invalid digest format"):
            store.blobs.path(bad)
    assert store.blobs.path("sha256-" + "A" * 64).name == "sha256-" + "A" * 64


def test_stale_temps_of_dead_writers_are_removed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.blobs.tmp_dir.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = store.blobs.tmp_dir / f"{dead.stdout.strip()}-x.partial"
    live = store.blobs.tmp_dir / f"{os.getpid()}-y.partial"
    foreign = store.blobs.tmp_dir / "create-abc"  # another tool's folder: not ours to judge
    stale.write_bytes(b"half a blob")
    live.write_bytes(b"being written")
    foreign.mkdir()
    (store.blobs.tmp_dir / f"{dead.stdout.strip()}-dir").mkdir()
    assert store.blobs.clean_stale_temps() == 2
    assert not stale.exists() and live.exists() and foreign.exists()


def test_prune_keeps_referenced_and_recent_blobs(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old = store.blobs.write_bytes(b"old orphan").digest
    new = store.blobs.write_bytes(b"new orphan").digest
    past = time.time() - 7200
    os.utime(store.blobs.path(old), (past, past))
    assert store.prune() == [old]
    assert store.blobs.exists(new)
    assert store.prune(grace_seconds=0) == [new]


def test_exclusive_lock_waits_for_shared_holders(tmp_path: Path) -> None:
    store = Store(tmp_path)
    order: list[str] = []
    waited = threading.Event()

    def remover() -> None:
        with store.exclusive_lock(on_wait=waited.set):
            order.append("exclusive")

    with store.shared_lock():
        thread = threading.Thread(target=remover)
        thread.start()
        assert waited.wait(timeout=10)
        order.append("shared done")
    thread.join(timeout=10)
    assert order == ["shared done", "exclusive"]
    with store.shared_lock(), store.shared_lock():  # readers don't block each other
        pass


def test_store_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OLLAMA_MODELS", f"  '{tmp_path / 'ollama'}' ")
    monkeypatch.setenv("MFC_MODELS", str(tmp_path / "mfc"))
    assert store_root(tmp_path / "flag") == tmp_path / "flag"
    assert store_root() == tmp_path / "mfc"
    monkeypatch.delenv("MFC_MODELS")
    assert store_root() == tmp_path / "ollama"  # whitespace and quotes trimmed
    monkeypatch.delenv("OLLAMA_MODELS")
    assert store_root() == Path.home() / ".ollama" / "models"


def test_reads_create_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "absent")
    assert store.list_models() == []
    assert store.names() == []
    assert store.verify() == []
    assert not (tmp_path / "absent").exists()
