"""`mfc export` / `mfc import`: models as OCI image-layout tarballs.

The tarball is an OCI image layout (image-spec `image-layout.md`):

    oci-layout                  {"imageLayoutVersion":"1.0.0"}
    index.json                  one descriptor per model: the manifest's digest, size, media
                                type, and its name in annotations (`io.containerd.image.name`
                                = host/namespace/model:tag, `org.opencontainers.image.ref.name`
                                = tag)
    blobs/sha256/<hex>          the manifest (the store's bytes, verbatim), config and layers

Export is reproducible: entries in a fixed order (layout files, then blobs by digest), mtime
`$SOURCE_DATE_EPOCH` or 0, uid/gid 0 with no user names, fixed modes, PAX format. The same
models always give the same bytes. The file is written to a temp name and renamed.

Import checks everything before touching the store: every blob it needs is hashed while it
is staged in the store's temp area, and only when all match their digests are they moved
into `blobs/` and the manifests written. A tarball with a bad blob leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from quant.files import remove_stale_temps, temp_path
from toolchain.gojson import GoStruct, encode
from toolchain.progress import ByteMeter, ProgressCallback, ProgressEvent, no_progress
from toolchain.registry.errors import LayoutError
from toolchain.registry.remote import (
    layer_meter,
)
from toolchain.store import mediatypes
from toolchain.store.blobs import StagedBlob, digest_of_bytes, is_canonical_digest
from toolchain.store.errors import BlobMismatchError, StoreError
from toolchain.store.manifest import Manifest
from toolchain.store.names import ModelName, parse_name
from toolchain.store.store import Store

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (mediatypes.MANIFEST, "application/vnd.oci.image.manifest.v1+json")
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class Transferred:
    """One model written to or read from a tarball."""

    name: ModelName
    digest: str  # manifest digest (hex)
    blobs: int

    def to_json(self) -> dict[str, object]:
        return {"model": self.name.display(), "digest": self.digest, "blobs": self.blobs}


# -- export -----------------------------------------------------------------------------


def export_models(
    names: list[str],
    output: Path,
    *,
    store: Store | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Transferred]:
    """Write the models `names` to `output` as one OCI image-layout tarball."""
    store = store or Store.open()
    models = [(resolved, store.read_manifest(resolved)) for resolved in map(store.resolve, names)]
    descriptors: list[GoStruct] = []
    blobs: dict[str, int | None] = {}
    for name, manifest in models:
        digest = "sha256:" + manifest.digest
        descriptors.append(
            GoStruct(
                mediaType=manifest.media_type or mediatypes.MANIFEST,
                digest=digest,
                size=len(manifest.data),
                annotations={NAME_ANNOTATION: str(name), REF_ANNOTATION: name.tag},
            )
        )
        blobs[digest] = None  # the manifest itself: bytes, not a store file
        for layer in manifest.all_layers():
            blobs[layer.digest] = layer.size
    index = GoStruct(schemaVersion=2, mediaType=OCI_INDEX, manifests=descriptors)
    manifests = {"sha256:" + m.digest: m.data for _, m in models}
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    output.parent.mkdir(parents=True, exist_ok=True)
    with (
        _atomic_output(output) as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add_bytes(tar, "oci-layout", OCI_LAYOUT, mtime)
        _add_bytes(tar, "index.json", encode(index), mtime)
        _add_dir(tar, "blobs", mtime)
        _add_dir(tar, "blobs/sha256", mtime)
        for digest in sorted(blobs):
            member = f"blobs/sha256/{digest[7:]}"
            if digest in manifests:
                _add_bytes(tar, member, manifests[digest], mtime)
                continue
            _add_blob(tar, store, member, digest, blobs[digest] or 0, mtime, progress)
    progress(ProgressEvent("success"))
    return [
        Transferred(name, manifest.digest, len(manifest.digests()) + 1) for name, manifest in models
    ]


@contextlib.contextmanager
def _atomic_output(output: Path) -> Iterator[IO[bytes]]:
    remove_stale_temps(output)  # what an export killed before its rename left
    tmp = temp_path(output)
    try:
        with tmp.open("r+b") as raw:
            yield raw
            raw.flush()
            os.fsync(raw.fileno())
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)


def _info(name: str, mtime: int, mode: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.type = mtime, mode, kind
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str, mtime: int) -> None:
    tar.addfile(_info(name, mtime, 0o755, tarfile.DIRTYPE))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = _info(name, mtime, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_blob(  # noqa: PLR0917
    tar: tarfile.TarFile,
    store: Store,
    member: str,
    digest: str,
    size: int,
    mtime: int,
    progress: ProgressCallback,
) -> None:
    meter = layer_meter(progress, "exporting", digest, size)
    info = _info(member, mtime, 0o644)
    with store.blobs.open(digest) as blob:
        info.size = os.fstat(blob.fileno()).st_size
        if info.size != size:
            raise LayoutError(
                f"blob {digest} has {info.size} bytes in the store but its manifest says {size}",
                hint="`mfc verify` checks the store",
            )
        tar.addfile(info, _Metered(blob, meter))
    meter.update(size)


class _Metered:
    """A read-only file wrapper that reports how much has been read."""

    def __init__(self, f: IO[bytes], meter: ByteMeter) -> None:
        self.f, self.meter, self.done = f, meter, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.done += len(data)
        self.meter.update(self.done)
        return data


# -- import -----------------------------------------------------------------------------


def import_models(
    tarball: Path,
    *,
    store: Store | None = None,
    name: str | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Transferred]:
    """Read the models of an OCI image-layout tarball into the store (all or nothing)."""
    store = store or Store.open()
    with _open_tar(tarball) as tar:
        files = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        try:
            layout = json.loads(_read_member(tar, files, "oci-layout", tarball))
        except ValueError:
            layout = None
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
            raise LayoutError(f"{tarball}: oci-layout does not declare imageLayoutVersion 1.0.0")
        entries = _index_entries(tar, files, tarball, name)
        previous = {target: store.current_manifest(target) for target, _ in entries}
        with store.shared_lock():
            _store_entries(tar, files, store, entries, tarball, progress)
    stale: set[str] = set()
    for target, manifest in entries:
        stale |= store.replaced_blobs(previous[target], manifest)
    if stale:
        store.remove_unreferenced(stale)
    progress(ProgressEvent("success"))
    return [Transferred(n, m.digest, len(m.digests()) + 1) for n, m in entries]


@contextlib.contextmanager
def _open_tar(tarball: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(tarball, mode="r:*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise LayoutError(f"cannot read {tarball}: {exc}") from None
    with tar:
        yield tar


def _store_entries(  # noqa: PLR0917
    tar: tarfile.TarFile,
    files: dict[str, tarfile.TarInfo],
    store: Store,
    entries: list[tuple[ModelName, Manifest]],
    tarball: Path,
    progress: ProgressCallback,
) -> None:
    """Stage and verify every missing blob, then move them in and write the manifests."""
    staged: dict[str, StagedBlob] = {}
    try:
        for _, manifest in entries:
            for layer in manifest.all_layers():
                if layer.digest in staged or store.blobs.exists(layer.digest):
                    continue
                staged[layer.digest] = _stage(
                    tar, files, store, layer.digest, layer.size, tarball, progress
                )
        for blob in staged.values():
            store.blobs.commit(blob)
        progress(ProgressEvent("writing manifest"))
        for target, manifest in entries:
            store.write_manifest(target, manifest.data)
    finally:
        for blob in staged.values():
            blob.discard()


def _read_member(
    tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo], member: str, tarball: Path
) -> bytes:
    info = files.get(member)
    f = tar.extractfile(info) if info is not None else None
    if f is None:
        raise LayoutError(f"{tarball} is not an OCI image layout: it has no {member}")
    with f:
        return f.read()


def _index_entries(
    tar: tarfile.TarFile, files: dict[str, tarfile.TarInfo], tarball: Path, name: str | None
) -> list[tuple[ModelName, Manifest]]:
    try:
        index = json.loads(_read_member(tar, files, "index.json", tarball))
        descriptors = index["manifests"]
        assert isinstance(descriptors, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise LayoutError(f"{tarball}: index.json is not an OCI image index") from None
    if not descriptors:
        raise LayoutError(f"{tarball}: index.json lists no manifests")
    if name is not None and len(descriptors) != 1:
        raise LayoutError(
            f"{tarball} holds {len(descriptors)} models; a name can only be given for one"
        )
    entries = []
    for descriptor in descriptors:
        if not isinstance(descriptor, dict) or descriptor.get("mediaType") not in MANIFEST_TYPES:
            raise LayoutError(
                f"{tarball}: index.json entry {descriptor!r:.120} is not a model manifest"
            )
        digest = descriptor.get("digest")
        if not is_canonical_digest(digest):
            raise LayoutError(f"{tarball}: index.json names an unsupported digest {digest!r}")
        data = _read_member(tar, files, f"blobs/sha256/{digest[7:]}", tarball)
        actual = digest_of_bytes(data)
        if actual != digest:
            raise LayoutError(f"{tarball}: manifest {digest} does not match its digest ({actual})")
        try:
            manifest = Manifest.parse(data).validate()
        except StoreError as exc:
            raise LayoutError(f"{tarball}: manifest {digest}: {exc.message}") from None
        entries.append((_model_name(descriptor, name, tarball), manifest))
    return entries


def _model_name(descriptor: dict[str, object], name: str | None, tarball: Path) -> ModelName:
    if name is not None:
        return parse_name(name)
    annotations = descriptor.get("annotations")
    if isinstance(annotations, dict):
        for key in (NAME_ANNOTATION, REF_ANNOTATION):
            value = annotations.get(key)
            if isinstance(value, str) and "/" in value:
                return parse_name(value)
    raise LayoutError(
        f"{tarball} does not say which model name {descriptor.get('digest')} has",
        hint="give one: mfc import FILE --name host/namespace/model:tag",
    )


def _stage(  # noqa: PLR0917
    tar: tarfile.TarFile,
    files: dict[str, tarfile.TarInfo],
    store: Store,
    digest: str,
    size: int,
    tarball: Path,
    progress: ProgressCallback,
) -> StagedBlob:
    """Copy one blob out of the tarball into the store's temp area, checking size and digest."""
    member = f"blobs/sha256/{digest[7:]}"
    info = files.get(member)
    source = tar.extractfile(info) if info is not None else None
    if info is None or source is None:
        raise LayoutError(f"{tarball} lacks blob {digest} that a manifest lists")
    if info.size != size:
        raise LayoutError(
            f"{tarball}: blob {digest} has {info.size} bytes, the manifest says {size}"
        )
    meter = layer_meter(progress, "importing", digest, size)
    try:
        with source:
            staged = store.blobs.stage(source, expected=digest, progress=meter.update)
    except BlobMismatchError as exc:
        raise LayoutError(
            f"{tarball}: blob {digest} does not match its digest (its bytes hash to {exc.got})",
            hint="the tarball is corrupt or was altered; nothing was imported",
        ) from None
    meter.update(size)
    return staged
