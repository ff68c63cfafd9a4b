"""The BuildPlan: what each pass reads and refines, from the request to the manifest.

A plan is immutable; each pass returns a new one (`dataclasses.replace`). Layers are
planned with their digests before anything is written, so the manifest of a build is
known before the store is touched, and emit only has to materialise what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toolchain.build.request import CreateRequest, SourceDir
from toolchain.errors import Span
from toolchain.store.config import ModelConfig
from toolchain.store.gguf_reader import GGUFInfo
from toolchain.store.manifest import Layer, Manifest
from toolchain.store.names import ModelName


@dataclass(frozen=True, slots=True)
class PlannedLayer:
    """A layer of the manifest to be, and where its bytes come from.

    `source` is a file to copy into the store, the bytes of a small blob, or None when the
    blob is already in the store (an inherited layer or a pass output).
    """

    media_type: str
    digest: str
    size: int
    source: Path | bytes | None = None
    from_: str = ""
    name: str = ""
    gguf: GGUFInfo | None = None
    status: str = (
        ""  # overrides "creating new layer"/"using existing layer" (autodetected template)
    )
    span: Span | None = None

    def layer(self) -> Layer:
        return Layer(self.media_type, self.digest, self.size, from_=self.from_, name=self.name)


@dataclass(frozen=True, slots=True)
class BuildPlan:
    name: ModelName
    request: CreateRequest
    old_manifest: Manifest | None = None
    from_model: ModelName | None = None
    #: base layers: the source model's layers, or the FROM files (then detected template/params)
    base: tuple[PlannedLayer, ...] = ()
    pending: tuple[SourceDir, ...] = ()  # Hugging Face folders the convert pass turns into GGUF
    pending_adapters: tuple[SourceDir, ...] = ()
    detected: tuple[PlannedLayer, ...] = ()
    adapters: tuple[PlannedLayer, ...] = ()
    drafts: tuple[PlannedLayer, ...] = ()
    config: ModelConfig = field(default_factory=ModelConfig)
    #: set by emit
    layers: tuple[PlannedLayer, ...] = ()
    manifest: Manifest | None = None

    def base_layers(self) -> tuple[PlannedLayer, ...]:
        """Base, detected, adapter and draft layers, in the reference's order."""
        return self.base + self.detected + self.adapters + self.drafts


@dataclass(frozen=True, slots=True)
class BuildResult:
    name: ModelName
    manifest: Manifest
    new_blobs: tuple[str, ...]
    removed_blobs: tuple[str, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest
