"""Distribution: push and pull models through OCI registries, export and import tarballs.

A model in the store is an OCI artifact already (a docker v2 manifest whose layers are
Ollama media types), so any OCI distribution v2 registry can hold it. Public API:

- `pull_model(name, store=, insecure=, progress=)` -> `PullResult`
- `push_model(name, store=, insecure=, progress=)` -> `PushResult`
- `pull_events(name, insecure=, store=)` / `push_events(...)`: the same as an
  `EventStream` of `ProgressEvent`s ending with `success` (what /api/pull and /api/push
  stream)
- `export_models(names, output, store=)` / `import_models(tarball, store=, name=)`:
  OCI image-layout tarballs
- errors: `RegistryError`, `AuthError`, `DigestMismatchError`, `LayoutError`
"""

from toolchain.registry.errors import AuthError, DigestMismatchError, LayoutError, RegistryError
from toolchain.registry.events import EventStream, pull_events, push_events
from toolchain.registry.oci_tarball import Transferred, export_models, import_models
from toolchain.registry.pull import PullResult, pull_model
from toolchain.registry.push import PushResult, push_model

__all__ = [
    "AuthError",
    "DigestMismatchError",
    "EventStream",
    "LayoutError",
    "PullResult",
    "PushResult",
    "RegistryError",
    "Transferred",
    "export_models",
    "import_models",
    "pull_events",
    "pull_model",
    "push_events",
    "push_model",
]
