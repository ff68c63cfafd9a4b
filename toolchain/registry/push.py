"""`mfc push`: send a model's blobs and manifest from the store to a registry.

Steps and statuses are the reference's (store_api.md §3.11): `retrieving manifest`, one
`pushing <12 hex>` bar per layer (then the config), `pushing manifest`, `success`. For each
blob the registry is asked first (HEAD): one it already has is not sent. A blob whose layer
came `from` another model on the same registry is mounted from that repository (cross-repo
mount, no bytes sent). Anything else is uploaded in chunks (POST, PATCH..., PUT ?digest=).
The manifest is sent with the store's exact bytes, so the registry serves the same digest.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.progress import ProgressCallback, ProgressEvent, no_progress
from toolchain.registry.client import RegistryClient
from toolchain.registry.errors import RegistryError
from toolchain.registry.remote import connect, layer_meter, mount_source, repository
from toolchain.store.errors import ModelNotFoundError
from toolchain.store.manifest import Layer, Manifest
from toolchain.store.names import ModelName
from toolchain.store.store import Store

#: bytes per PATCH request; each chunk is held in memory so it can be re-sent after a 401
UPLOAD_CHUNK = 16 << 20


@dataclass(frozen=True, slots=True)
class PushResult:
    name: ModelName
    digest: str  # the manifest digest (hex)
    uploaded: tuple[str, ...]  # blobs sent byte by byte
    mounted: tuple[str, ...]  # blobs linked from another repository of the registry
    existing: tuple[str, ...]  # blobs the registry already had

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.name.display(),
            "digest": self.digest,
            "uploaded": list(self.uploaded),
            "mounted": list(self.mounted),
            "existing": list(self.existing),
        }


def push_model(
    name: str | ModelName,
    *,
    store: Store | None = None,
    insecure: bool = False,
    progress: ProgressCallback = no_progress,
    chunk_size: int = UPLOAD_CHUNK,
) -> PushResult:
    """Push `name` (which must carry its registry host, e.g. `localhost:5000/team/m:v1`)."""
    store = store or Store.open()
    target = store.resolve(name)
    if target.on_default_registry:
        raise RegistryError(
            f"{target.display()} has no registry host to push to",
            hint="copy it to a name with a registry host (localhost:5000/team/model:tag) and "
            "push that; pushing to ollama.com needs Ollama's signed keys, which mfc lacks",
        )
    progress(ProgressEvent("retrieving manifest"))
    try:
        manifest = store.read_manifest(target)
    except ModelNotFoundError:
        progress(ProgressEvent("couldn't retrieve manifest"))
        raise
    outcome: dict[str, list[str]] = {"uploaded": [], "mounted": [], "existing": []}
    # layers without `from` (the config, above all) are most likely where the others came from
    fallback = next(
        (s for s in (mount_source(layer.from_, target) for layer in manifest.layers) if s), None
    )
    with connect(target, insecure=insecure) as client, store.shared_lock():
        for layer in manifest.all_layers():
            source = mount_source(layer.from_, target) if layer.from_ else fallback
            kind = _push_layer(client, store, target, layer, source, progress, chunk_size)
            outcome[kind].append(layer.digest)
        progress(ProgressEvent("pushing manifest"))
        client.put_manifest(repository(target), target.tag, manifest.data, _media_type(manifest))
    progress(ProgressEvent("success"))
    return PushResult(
        target,
        manifest.digest,
        tuple(outcome["uploaded"]),
        tuple(outcome["mounted"]),
        tuple(outcome["existing"]),
    )


def _media_type(manifest: Manifest) -> str:
    return manifest.media_type or "application/vnd.docker.distribution.manifest.v2+json"


def _push_layer(  # noqa: PLR0917
    client: RegistryClient,
    store: Store,
    target: ModelName,
    layer: Layer,
    source: str | None,
    progress: ProgressCallback,
    chunk_size: int,
) -> str:
    """Make sure the registry has one blob; returns how: uploaded, mounted or existing.

    With a `source` repository the upload starts as a cross-repository mount; a registry
    that does not have the blob there answers with an ordinary upload session instead.
    """
    repo = repository(target)
    meter = layer_meter(progress, "pushing", layer.digest, layer.size)
    if client.blob_exists(repo, layer.digest):
        meter.update(layer.size)
        return "existing"
    location = client.start_upload(repo, mount=layer.digest if source else None, source=source)
    if location is None:
        meter.update(layer.size)
        return "mounted"
    sent = 0
    meter.update(0)
    with store.blobs.open(layer.digest) as blob:
        while chunk := blob.read(chunk_size):
            location = client.upload_chunk(location, chunk, sent)
            sent += len(chunk)
            meter.update(sent)
    client.finish_upload(location, layer.digest)
    meter.update(layer.size)
    return "uploaded"
