"""The config blob (`model.ConfigV2`, store_api.md §1.6) and the values derived for it.

Field order and `omitempty` rules are the reference's, so the same model gives the same
147-byte `{"model_format":"gguf",...,"os":"linux"}\\n` and the same digest.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from quant.filetypes import ftype_name
from toolchain.gojson import GoStruct, encode


def file_type_name(general_file_type: object) -> str:
    """The reference's `FileType.String()` for `general.file_type` (a uint32 KV; 0, unknown
    ids and anything else read "unknown")."""
    if isinstance(general_file_type, int) and not isinstance(general_file_type, bool):
        return (ftype_name(general_file_type) if general_file_type > 0 else None) or "unknown"
    return "unknown"


@dataclass(frozen=True, slots=True)
class ArchDefaults:
    """What the reference's create sets for an architecture when the request has none."""

    renderer: str
    parser: str
    stop: tuple[str, ...] | None = None  # default stop words (a params value)


_NEMOTRON = ArchDefaults("nemotron-3-nano", "nemotron-3-nano")
#: GGUF architecture -> its renderer, parser and stop words
ARCH_DEFAULTS: dict[str, ArchDefaults] = {
    "gemma4": ArchDefaults("gemma4", "gemma4", ("<turn|>",)),
    "laguna": ArchDefaults("laguna", "laguna"),
    "nemotron_h": _NEMOTRON,
    "nemotron_h_moe": _NEMOTRON,
    "nemotron_h_omni": _NEMOTRON,
}


def human_number(n: int) -> str:
    """`format.HumanNumber`: 134515008 -> "134.52M", 8030261248 -> "8.0B", 999 -> "999"."""
    if n >= 1_000_000_000:
        v = n / 1_000_000_000
        return f"{v:.0f}B" if v == int(v) else f"{v:.1f}B"
    if n >= 1_000_000:
        v = n / 1_000_000
        return f"{v:.0f}M" if v == int(v) else f"{v:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


@dataclass(frozen=True, slots=True)
class DraftConfig:
    model_format: str = ""
    architecture: str = ""
    tensor_prefix: str = ""
    config: str = ""

    def to_go(self) -> GoStruct:
        out = GoStruct()
        for key in ("model_format", "architecture", "tensor_prefix", "config"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """`ConfigV2`. `model_families` is None when there are no model layers (Go's nil)."""

    model_format: str = ""
    model_family: str = ""
    model_families: tuple[str, ...] | None = None
    model_type: str = ""
    file_type: str = ""
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    remote_host: str = ""
    remote_model: str = ""
    capabilities: tuple[str, ...] = ()
    context_length: int = 0
    embedding_length: int = 0
    base_name: str = ""
    draft: DraftConfig | None = None
    architecture: str = "amd64"
    os: str = "linux"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_go(self) -> GoStruct:
        out = GoStruct(
            model_format=self.model_format,
            model_family=self.model_family,
            model_families=list(self.model_families) if self.model_families is not None else None,
            model_type=self.model_type,
            file_type=self.file_type,
        )
        for key in ("renderer", "parser", "requires", "remote_host", "remote_model"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.capabilities:
            out["capabilities"] = list(self.capabilities)
        if self.context_length:
            out["context_length"] = self.context_length
        if self.embedding_length:
            out["embedding_length"] = self.embedding_length
        if self.base_name:
            out["base_name"] = self.base_name
        if self.draft is not None:
            out["draft"] = self.draft.to_go()
        out["architecture"] = self.architecture
        out["os"] = self.os
        return out

    def encode(self) -> bytes:
        return encode(self.to_go())

    def with_model_layer(
        self, architecture: str, parameter_count: int, file_type: int
    ) -> ModelConfig:
        """Fold in one model layer the way `createModel` does (the first layer's values win).

        `file_type` is `general.file_type` when it is a uint32 (else 0, which reads "unknown").
        """
        return replace(
            self,
            model_format=self.model_format or "gguf",
            model_family=self.model_family or architecture,
            model_type=self.model_type or human_number(parameter_count),
            file_type=self.file_type or file_type_name(file_type),
            model_families=(*(self.model_families or ()), architecture),
        )

    def with_arch_defaults(self, architecture: str) -> tuple[ModelConfig, tuple[str, ...] | None]:
        """Fill in the renderer and parser of `architecture` where the request left either
        empty; also the stop words that come with them (None when nothing was filled)."""
        defaults = ARCH_DEFAULTS.get(architecture)
        if defaults is None or (self.renderer and self.parser):
            return self, None
        filled = replace(
            self, renderer=self.renderer or defaults.renderer, parser=self.parser or defaults.parser
        )
        return filled, defaults.stop

    @classmethod
    def from_json(cls, obj: Any) -> ModelConfig:
        """Read a config blob decoded from JSON (unknown fields are kept in `extra`)."""
        if not isinstance(obj, dict):
            return cls()
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        draft = obj.get("draft")
        families = obj.get("model_families")
        return cls(
            model_format=str(obj.get("model_format") or ""),
            model_family=str(obj.get("model_family") or ""),
            model_families=tuple(str(f) for f in families) if isinstance(families, list) else None,
            model_type=str(obj.get("model_type") or ""),
            file_type=str(obj.get("file_type") or ""),
            renderer=str(obj.get("renderer") or ""),
            parser=str(obj.get("parser") or ""),
            requires=str(obj.get("requires") or ""),
            remote_host=str(obj.get("remote_host") or ""),
            remote_model=str(obj.get("remote_model") or ""),
            capabilities=tuple(str(c) for c in obj.get("capabilities") or ()),
            context_length=int(obj.get("context_length") or 0),
            embedding_length=int(obj.get("embedding_length") or 0),
            base_name=str(obj.get("base_name") or ""),
            draft=DraftConfig(**{k: str(v) for k, v in draft.items() if k in DraftConfig.__slots__})
            if isinstance(draft, dict)
            else None,
            architecture=str(obj.get("architecture") or ""),
            os=str(obj.get("os") or ""),
            extra={k: v for k, v in obj.items() if k not in known},
        )
