"""What pull and push share: model name -> registry repository, and per-layer progress."""

from __future__ import annotations

from toolchain.progress import ByteMeter, ProgressCallback
from toolchain.registry.client import RegistryClient
from toolchain.store.names import ModelName, parse_name_lenient

#: seconds between two progress events of one layer (the reference ticks every 60 ms)
PROGRESS_INTERVAL = 0.06


def repository(name: ModelName) -> str:
    """The registry repository of a model name: `namespace/model`."""
    return f"{name.namespace}/{name.model}"


def connect(name: ModelName, *, insecure: bool) -> RegistryClient:
    """A client for the registry that `name` lives on (`http://` in the name needs insecure)."""
    # https is also the default, so it is not a demand: --insecure may still fall back to http
    scheme = None if name.scheme in ("", "https") else name.scheme
    return RegistryClient(name.host, scheme=scheme, insecure=insecure)


def mount_source(layer_from: str, target: ModelName) -> str | None:
    """The repository to mount a layer from, when its `from` names a model on the same host.

    A layer inherited with `FROM localhost:5000/team/base` carries that name in `from`; a
    push of the derived model to `localhost:5000/team/derived` can then ask the registry to
    link the blob from `team/base` instead of uploading it again.
    """
    if not layer_from:
        return None
    source = parse_name_lenient(layer_from)
    if not source.is_valid or source.host.lower() != target.host.lower():
        return None
    repo = repository(source)
    return repo if repo != repository(target) else None


def short(digest: str) -> str:
    """The 12 hex digits the reference shows for a layer (`pulling 89a2116c3a82`)."""
    return digest.removeprefix("sha256:")[:12]


def layer_meter(progress: ProgressCallback, verb: str, digest: str, size: int) -> ByteMeter:
    """Progress of one layer as the reference reports it (`pulling 89a2116c3a82`, with digest,
    total and completed), at most one event per 60 ms."""
    return ByteMeter(progress, f"{verb} {short(digest)}", size, digest, interval=PROGRESS_INTERVAL)
