"""A stored model, read back: what its layers say (the view `mfc show` and the runtime use).
What the model can do and how `show` reports it need the template engine, so they live
above the store, in `toolchain.describe`.

`load_model(store, "smollm2")` gathers the blob paths and the text of every layer the way the
reference's `GetModel` does: the model GGUF, adapters and projectors, the template (the
legacy `prompt` type too), the system prompt (last wins), parameters, messages, licenses
and the config blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.gojson import decode_any
from toolchain.store import mediatypes
from toolchain.store.config import ModelConfig, file_type_name
from toolchain.store.errors import StoreError
from toolchain.store.gguf_reader import GGUFInfo, read_gguf
from toolchain.store.manifest import Manifest
from toolchain.store.names import ModelName
from toolchain.store.store import Store


@dataclass(frozen=True, slots=True)
class StoredModel:
    name: ModelName
    manifest: Manifest
    config: ModelConfig
    modified: float
    model_path: Path | None = None
    parent_model: str = ""  # the model layer's `from`
    adapter_paths: tuple[Path, ...] = ()
    projector_paths: tuple[Path, ...] = ()
    draft_path: Path | None = None
    template: str | None = None  # None: the model has no template layer
    system: str = ""
    parameters: dict[str, Any] = field(
        default_factory=dict
    )  # as Go decodes them: numbers are float
    messages: tuple[dict[str, Any], ...] = ()
    licenses: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def gguf(self) -> GGUFInfo | None:
        """The model GGUF's header (metadata and tensor table), or None without a model layer."""
        return read_gguf(self.model_path) if self.model_path is not None else None

    def details(self, gguf: GGUFInfo | None = None) -> dict[str, Any]:
        """The `details` object of `/api/tags` and `/api/show` (store_api.md §1.11)."""
        quant = self.config.file_type
        if quant in ("", "unknown") and gguf is not None:
            quant = file_type_name(gguf.get_uint32("general.file_type") or None)
        out: dict[str, Any] = {
            "parent_model": self.parent_model,
            "format": self.config.model_format,
            "family": self.config.model_family,
            "families": list(self.config.model_families) if self.config.model_families else None,
            "parameter_size": self.config.model_type,
            "quantization_level": quant,
        }
        if self.config.context_length:
            out["context_length"] = self.config.context_length
        if self.config.embedding_length:
            out["embedding_length"] = self.config.embedding_length
        return out


def _text(store: Store, digest: str) -> str:
    return store.blobs.read_bytes(digest).decode("utf-8", "replace")


def load_model(store: Store, name: str | ModelName) -> StoredModel:
    """Read a model's manifest and layers; `ModelNotFoundError` if there is no such model."""
    resolved = store.resolve(name)
    manifest = store.read_manifest(resolved)
    config = ModelConfig()
    if manifest.config.digest:
        try:
            config = ModelConfig.from_json(
                decode_any(store.blobs.read_bytes(manifest.config.digest))
            )
        except (StoreError, ValueError):
            config = ModelConfig()
    fields: dict[str, Any] = {
        "adapter_paths": [],
        "projector_paths": [],
        "licenses": [],
        "parameters": {},
        "messages": [],
    }
    for layer in manifest.layers:
        mt = layer.media_type
        if mt == mediatypes.MODEL:
            if "model_path" not in fields:
                fields["model_path"] = store.blobs.path(layer.digest)
                fields["parent_model"] = layer.from_
        elif mt == mediatypes.ADAPTER:
            fields["adapter_paths"].append(store.blobs.path(layer.digest))
        elif mt == mediatypes.PROJECTOR:
            fields["projector_paths"].append(store.blobs.path(layer.digest))
        elif mt == mediatypes.DRAFT:
            fields["draft_path"] = store.blobs.path(layer.digest)
        elif mt in (mediatypes.TEMPLATE, mediatypes.PROMPT):
            fields["template"] = _text(store, layer.digest)
        elif mt == mediatypes.SYSTEM:
            fields["system"] = _text(store, layer.digest)
        elif mt == mediatypes.LICENSE:
            fields["licenses"].append(_text(store, layer.digest))
        elif mt == mediatypes.PARAMS:
            params = decode_any(store.blobs.read_bytes(layer.digest))
            if isinstance(params, dict):
                fields["parameters"] = params
        elif mt == mediatypes.MESSAGES:
            messages = decode_any(store.blobs.read_bytes(layer.digest))
            if isinstance(messages, list):
                fields["messages"] = [m for m in messages if isinstance(m, dict)]
    for key in ("adapter_paths", "projector_paths", "licenses", "messages"):
        fields[key] = tuple(fields[key])
    return StoredModel(
        name=resolved,
        manifest=manifest,
        config=config,
        modified=store.modified(resolved),
        **fields,
    )
