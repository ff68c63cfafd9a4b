"""Manifests: the JSON file per model name that lists its config and layers (store_api.md §1.4).

Encoding is the reference's `json.NewEncoder(f).Encode(Manifest{...})`, so a manifest mfc
writes has the same bytes, and the same digest, as Ollama's for the same layers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toolchain.gojson import GoStruct, encode
from toolchain.store import mediatypes
from toolchain.store.blobs import is_canonical_digest
from toolchain.store.errors import StoreError


@dataclass(frozen=True, slots=True)
class Layer:
    """One entry of a manifest: a blob, what it is, and where it came from."""

    media_type: str
    digest: str
    size: int
    from_: str = ""  # provenance: source model (display form) or source file name
    name: str = ""  # MLX tensor/json layers only

    def to_go(self) -> GoStruct:
        out = GoStruct(mediaType=self.media_type, digest=self.digest, size=self.size)
        if self.from_:
            out["from"] = self.from_
        if self.name:
            out["name"] = self.name
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Layer:
        if not isinstance(obj, dict):
            raise StoreError("manifest layer is not an object")
        try:
            return cls(
                media_type=str(obj.get("mediaType", "")),
                digest=str(obj["digest"]),
                size=int(obj.get("size", 0)),
                from_=str(obj.get("from", "") or ""),
                name=str(obj.get("name", "") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"malformed manifest layer: {exc}") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest. `raw` is the file's bytes when it was read from disk."""

    config: Layer
    layers: tuple[Layer, ...]
    schema_version: int = 2
    media_type: str = mediatypes.MANIFEST
    raw: bytes = field(default=b"", repr=False, compare=False)

    def encode(self) -> bytes:
        """The bytes the reference's `WriteManifest` writes for these layers."""
        return encode(
            GoStruct(
                schemaVersion=self.schema_version,
                mediaType=self.media_type,
                config=self.config.to_go(),
                layers=[layer.to_go() for layer in self.layers],
            )
        )

    @property
    def data(self) -> bytes:
        """The bytes on disk (verbatim for pulled/copied manifests), else our encoding."""
        return self.raw or self.encode()

    @property
    def digest(self) -> str:
        """The manifest digest: hex sha256 of its bytes, without a `sha256:` prefix."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        """Sum of the layer sizes and the config size (the `size` of `/api/tags`)."""
        return self.config.size + sum(layer.size for layer in self.layers)

    def all_layers(self) -> Iterator[Layer]:
        """Every blob the manifest references: the layers, then the config."""
        yield from self.layers
        if self.config.digest:
            yield self.config

    def digests(self) -> set[str]:
        return {layer.digest for layer in self.all_layers()}

    def layers_of(self, media_type: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.media_type == media_type]

    def validate(self) -> Manifest:
        """Refuse a manifest from elsewhere (a registry, a tarball) the store cannot hold.

        Raises `StoreError` for a schemaVersion other than 2, a blob digest that is not
        `sha256:` + 64 lowercase hex (it becomes a file name), or a negative size.
        """
        if self.schema_version != 2:
            raise StoreError(f"unsupported schemaVersion {self.schema_version}")
        for layer in self.all_layers():
            if not is_canonical_digest(layer.digest):
                raise StoreError(f"unsupported blob digest {layer.digest!r}")
            if layer.size < 0:
                raise StoreError(f"blob {layer.digest} has a negative size")
        return self

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Parse manifest bytes (keeping them as `raw`); raises `StoreError` if malformed."""
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"corrupt manifest: {exc}") from None
        except RecursionError:
            raise StoreError("corrupt manifest: JSON nested too deep") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("layers", []), list):
            raise StoreError("corrupt manifest: not a manifest object")
        config = obj.get("config") or {}
        return cls(
            config=Layer.from_json(config) if config else Layer(mediatypes.CONFIG, "", 0),
            layers=tuple(Layer.from_json(layer) for layer in obj.get("layers") or []),
            schema_version=int(obj.get("schemaVersion", 2)),
            media_type=str(obj.get("mediaType", mediatypes.MANIFEST)),
            raw=bytes(data),
        )
