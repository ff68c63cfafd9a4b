"""`mfc pull`: fetch a model's manifest and blobs from a registry into the store.

The steps and progress statuses are the reference's (store_api.md §3.11): `pulling manifest`,
one `pulling <12 hex>` bar per layer (then the config), `verifying sha256 digest`,
`writing manifest`, [`removing unused layers`], `success`. Blobs already in the store are
not fetched again; the manifest is written verbatim, as the registry served it, so its
digest is the one the registry (and whoever pushed it) knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolchain.progress import ProgressCallback, ProgressEvent, no_progress
from toolchain.registry.client import INDEX_TYPES, RegistryClient
from toolchain.registry.download import (
    DownloadTuning,
    blob_lock,
    discard_partial,
    fetch_blob,
    forget_parts,
    partial_path,
)
from toolchain.registry.errors import DigestMismatchError, RegistryError
from toolchain.registry.remote import (
    connect,
    layer_meter,
    repository,
)
from toolchain.store.errors import BlobMismatchError, StoreError
from toolchain.store.manifest import Layer, Manifest
from toolchain.store.names import ModelName
from toolchain.store.store import Store


@dataclass(frozen=True, slots=True)
class PullResult:
    name: ModelName
    digest: str  # the manifest digest (hex, as /api/tags shows it)
    downloaded: tuple[str, ...]  # blob digests fetched from the registry
    cached: tuple[str, ...]  # blob digests that were already in the store
    removed: tuple[str, ...]  # blobs of the previous version nothing references any more

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.name.display(),
            "digest": self.digest,
            "downloaded": list(self.downloaded),
            "cached": list(self.cached),
            "removed": list(self.removed),
        }


def pull_model(
    name: str | ModelName,
    *,
    store: Store | None = None,
    insecure: bool = False,
    progress: ProgressCallback = no_progress,
    tuning: DownloadTuning | None = None,
) -> PullResult:
    """Pull `name` (e.g. `localhost:5000/team/model:tag`) into `store` (default: Store.open())."""
    store = store or Store.open()
    target = store.resolve(name)
    progress(ProgressEvent("pulling manifest"))
    with connect(target, insecure=insecure) as client:
        body, media_type = client.get_manifest(repository(target), target.tag)
        manifest = _parse_manifest(body, media_type)
        previous = store.current_manifest(target)
        with store.shared_lock():
            downloaded, cached = _fetch_layers(
                client, store, target, manifest, progress=progress, tuning=tuning
            )
            progress(ProgressEvent("verifying sha256 digest"))
            for layer in downloaded:
                _commit(store, layer.digest)
            progress(ProgressEvent("writing manifest"))
            digest = store.write_manifest(target, body)
    removed: list[str] = []
    stale = store.replaced_blobs(previous, manifest)
    if stale:
        progress(ProgressEvent("removing unused layers"))
        try:
            removed = store.remove_unreferenced(stale)
        except OSError as exc:  # the reference reports this and still succeeds
            progress(ProgressEvent(f"couldn't remove unused layers: {exc}"))
    progress(ProgressEvent("success"))
    return PullResult(
        target,
        digest,
        tuple(layer.digest for layer in downloaded),
        tuple(cached),
        tuple(removed),
    )


def _parse_manifest(body: bytes, media_type: str) -> Manifest:
    if media_type in INDEX_TYPES:
        raise RegistryError(
            "pull model manifest: the registry serves an image index (several platforms), "
            "not a model manifest",
            hint="this name holds a container image, not a model",
        )
    try:
        return Manifest.parse(body).validate()
    except StoreError as exc:
        raise RegistryError(f"pull model manifest: {exc.message}") from None


def _fetch_layers(
    client: RegistryClient,
    store: Store,
    target: ModelName,
    manifest: Manifest,
    *,
    progress: ProgressCallback,
    tuning: DownloadTuning | None,
) -> tuple[list[Layer], list[str]]:
    """Download every layer the store lacks (complete but unverified); returns (fetched, cached)."""
    downloaded: list[Layer] = []
    cached: list[str] = []
    for layer in manifest.all_layers():
        meter = layer_meter(progress, "pulling", layer.digest, layer.size)
        blob = store.blobs.path(layer.digest)
        if blob.is_file():
            cached.append(layer.digest)
            meter.update(layer.size)
            continue
        with blob_lock(blob):
            if blob.is_file():  # another process pulled it while we waited
                cached.append(layer.digest)
            else:
                fetch_blob(
                    client,
                    repository(target),
                    layer.digest,
                    layer.size,
                    blob,
                    on_progress=meter.update,
                    tuning=tuning,
                )
                downloaded.append(layer)
        meter.update(layer.size)
    return downloaded, cached


def _commit(store: Store, digest: str) -> None:
    """Verify a fetched blob and move it into the store (or find that someone else did).

    A download whose bytes don't hash to its digest is deleted with its part states, so
    the next pull starts it afresh and nothing corrupt stays in the store.
    """
    blob: Path = store.blobs.path(digest)
    with blob_lock(blob):
        if blob.is_file():
            return
        try:
            store.blobs.adopt(partial_path(blob), expected=digest)
        except BlobMismatchError as exc:
            discard_partial(blob)
            raise DigestMismatchError(
                digest, exc.got, hint="the registry or the network altered the bytes; pull again"
            ) from None
        forget_parts(blob)
