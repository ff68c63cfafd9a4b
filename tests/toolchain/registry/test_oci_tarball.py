"""export -> import through OCI image-layout tarballs."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from tests.toolchain.registry.models import snapshot, store_model
from toolchain.registry.errors import LayoutError
from toolchain.registry.oci_tarball import export_models, import_models
from toolchain.store import Store, mediatypes

NAME = "registry.example.com/team/tiny:v1"


def test_export_is_reproducible_and_a_valid_oci_layout(
    store: Store, small_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    manifest = store_model(store, NAME, small_gguf, system="Hi.")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    export_models([NAME], first, store=store)
    # touching blobs (new mtimes) must not change the tarball
    for blob in (store.root / "blobs").iterdir():
        blob.touch()
    export_models([NAME], second, store=store)
    assert first.read_bytes() == second.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))

    with tarfile.open(first) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:4] == ["oci-layout", "index.json", "blobs", "blobs/sha256"]
        blob_names = names[4:]
        assert blob_names == sorted(blob_names)
        expected = {f"blobs/sha256/{d[7:]}" for d in manifest.digests()}
        expected.add(f"blobs/sha256/{manifest.digest}")
        assert set(blob_names) == expected
        assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
        layout = json.load(tar.extractfile("oci-layout"))  # type: ignore[arg-type]
        assert layout == {"imageLayoutVersion": "1.0.0"}
        raw_index = tar.extractfile("index.json").read()  # type: ignore[union-attr]
        index = json.loads(raw_index)
        # Go-JSON, like every JSON mfc writes: struct order, compact, trailing newline
        assert list(index) == ["schemaVersion", "mediaType", "manifests"]
        assert list(index["manifests"][0]) == ["mediaType", "digest", "size", "annotations"]
        assert raw_index == json.dumps(index, separators=(",", ":")).encode() + b"\n"
        assert index["schemaVersion"] == 2
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        (entry,) = index["manifests"]
        assert entry["digest"] == "sha256:" + manifest.digest
        assert entry["size"] == len(manifest.data)
        assert entry["mediaType"] == mediatypes.MANIFEST
        assert entry["annotations"]["io.containerd.image.name"] == NAME
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == "v1"
        stored = tar.extractfile(f"blobs/sha256/{manifest.digest}")
        assert stored is not None and stored.read() == manifest.data


def test_import_into_an_empty_store_gives_the_same_manifest_digest(
    store: Store, other_store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    manifest = store_model(store, NAME, small_gguf)
    tarball = tmp_path / "model.tar"
    export_models([NAME], tarball, store=store)
    (imported,) = import_models(tarball, store=other_store)
    assert imported.digest == manifest.digest
    assert str(imported.name) == NAME
    assert snapshot(other_store) == snapshot(store)
    assert other_store.verify() == []

    # under another name, the manifest digest is still the same
    (renamed,) = import_models(tarball, store=other_store, name="mine/copy:latest")
    assert renamed.digest == manifest.digest
    assert other_store.read_manifest("mine/copy").digest == manifest.digest


def _rewrite(tarball: Path, out: Path, member: str, change: object) -> None:
    """Copy a tarball, passing `member`'s bytes through `change`."""
    with tarfile.open(tarball) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if info.name == member and data is not None:
                data = change(data)  # type: ignore[operator]
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)


def test_import_of_a_tampered_blob_fails_and_leaves_the_store_untouched(
    store: Store, other_store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    manifest = store_model(store, NAME, small_gguf)
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    export_models([NAME], good, store=store)

    def flip(data: bytes) -> bytes:
        return data[:10] + bytes([data[10] ^ 1]) + data[11:]

    # the config is checked last: every layer before it has been staged by then
    _rewrite(good, bad, f"blobs/sha256/{manifest.config.digest[7:]}", flip)
    before = snapshot(other_store)
    with pytest.raises(LayoutError, match="does not match its digest") as caught:
        import_models(bad, store=other_store)
    assert caught.value.hint and "nothing was imported" in caught.value.hint
    assert snapshot(other_store) == before
    assert not other_store.names()
    tmp = other_store.root / ".mfc" / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


def test_import_rejects_what_is_not_a_model_layout(
    store: Store, other_store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    store_model(store, NAME, small_gguf)
    good = tmp_path / "good.tar"
    export_models([NAME], good, store=store)

    no_index = tmp_path / "no-index.tar"
    with tarfile.open(no_index, "w") as tar:
        info = tarfile.TarInfo("oci-layout")
        data = b'{"imageLayoutVersion":"1.0.0"}'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(LayoutError, match=r"has no index\.json"):
        import_models(no_index, store=other_store)

    unnamed = tmp_path / "unnamed.tar"

    def drop_names(data: bytes) -> bytes:
        index = json.loads(data)
        for entry in index["manifests"]:
            entry.pop("annotations")
        return json.dumps(index).encode()

    _rewrite(good, unnamed, "index.json", drop_names)
    with pytest.raises(LayoutError, match="which model name") as caught:
        import_models(unnamed, store=other_store)
    assert caught.value.hint and "--name" in caught.value.hint
    import_models(unnamed, store=other_store, name="team/named:v2")
    assert other_store.names()[0].model == "named"

    text = tmp_path / "not-a-tar.tar"
    text.write_text("hello")
    with pytest.raises(LayoutError, match="cannot read"):
        import_models(text, store=other_store)


def test_several_models_share_blobs_in_one_tarball(
    store: Store, other_store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    first = store_model(store, "team/one:v1", small_gguf, system="One.")
    second = store_model(store, "team/two:v1", small_gguf, system="Two.")
    tarball = tmp_path / "both.tar"
    export_models(["team/one:v1", "team/two:v1"], tarball, store=store)
    with tarfile.open(tarball) as tar:
        blobs = [m.name for m in tar.getmembers() if m.name.startswith("blobs/sha256/")]
    assert len(blobs) == len(set(blobs)) == len(first.digests() | second.digests()) + 2
    imported = import_models(tarball, store=other_store)
    assert [(m.name.display(), m.digest) for m in imported] == [
        ("team/one:v1", first.digest),
        ("team/two:v1", second.digest),
    ]
    assert snapshot(other_store) == snapshot(store)
    with pytest.raises(LayoutError, match="holds 2 models"):
        import_models(tarball, store=other_store, name="x:y")


def _layout_tar(path: Path, manifest: bytes) -> Path:
    """An OCI layout holding one manifest (and none of the blobs it names)."""
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mediatypes.MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "annotations": {"io.containerd.image.name": NAME},
            }
        ],
    }
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps(index).encode()),
            (f"blobs/sha256/{digest[7:]}", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    ("digest", "size", "problem"),
    [
        ("sha256:" + "A" * 64, 3, "unsupported blob digest 'sha256:AAAA"),
        ("sha256:" + "a" * 64, -3, "has a negative size"),
    ],
)
def test_import_refuses_a_manifest_the_store_cannot_hold(
    other_store: Store, tmp_path: Path, digest: str, size: int, problem: str
) -> None:
    layer = {"mediaType": mediatypes.MODEL, "digest": digest, "size": size}
    manifest = json.dumps({"schemaVersion": 2, "config": layer, "layers": [layer]}).encode()
    tarball = _layout_tar(tmp_path / "odd.tar", manifest)
    with pytest.raises(LayoutError, match=re.escape(problem)):
        import_models(tarball, store=other_store)
    assert not other_store.root.exists()
