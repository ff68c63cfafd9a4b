"""The model store (Ollama's layout and bytes): names, blobs, manifests, config, GC.

Public API used by the build, the runtime and the registry client:

- `Store.open(models=None)`: the store for `--models DIR` / `$MFC_MODELS` / `$OLLAMA_MODELS`.
- names: `parse_name`, `ModelName` (`.display()`), `Store.resolve` (case-insensitive).
- manifests: `Store.read_manifest(name)`, `Store.write_manifest(name, manifest_or_bytes)`,
  `Store.list_models()`, `Manifest`, `Layer`.
- blobs: `Store.blobs.path/open/exists/write_stream/write_bytes/import_file/verify`, and
  `stage`/`commit` (check first, add later) and `adopt(tmp, expected=)` (a finished file);
  a digest that does not match raises `BlobMismatchError`.
- removal: `Store.delete(name)`, `Store.copy(src, dst)`, `Store.remove_unreferenced(digests)`,
  `Store.prune()` (full GC), `Store.verify()`; locks `Store.shared_lock/exclusive_lock`.
- build cache: `Store.cache` (`BuildCache`: entries, ownership, sweep), `Store.evict_cache`.
- models: `load_model(store, name)` -> `StoredModel` (template, system, params, paths ...);
  what they can do and `show`'s report: `toolchain.describe`, above the store.
- JSON: `toolchain.gojson.encode` (Go `encoding/json` bytes), `toolchain.gojson.decode_any`.
"""

from toolchain.store.blobs import (
    BlobWrite,
    StagedBlob,
    digest_of_bytes,
    digest_of_file,
    is_digest,
)
from toolchain.store.config import ModelConfig
from toolchain.store.errors import (
    BlobError,
    BlobMismatchError,
    InvalidNameError,
    ModelNotFoundError,
    StoreError,
)
from toolchain.store.manifest import Layer, Manifest
from toolchain.store.model import StoredModel, load_model
from toolchain.store.names import ModelName, parse_name
from toolchain.store.root import store_root
from toolchain.store.store import ModelEntry, Store

__all__ = [
    "BlobError",
    "BlobMismatchError",
    "BlobWrite",
    "InvalidNameError",
    "Layer",
    "Manifest",
    "ModelConfig",
    "ModelEntry",
    "ModelName",
    "ModelNotFoundError",
    "StagedBlob",
    "Store",
    "StoreError",
    "StoredModel",
    "digest_of_bytes",
    "digest_of_file",
    "is_digest",
    "load_model",
    "parse_name",
    "store_root",
]
