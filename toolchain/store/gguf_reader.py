"""The store's view of a GGUF header: what kind of model file it is, as the reference decides.

The bytes are read by `quant.gguf_read`, the one GGUF reader; this module adds what a
build and the store ask of a model file (projector or adapter, chat template), checks
that every tensor lies inside the file (a truncated download is caught here), and turns
the reader's errors into `GGUFError`, an `MfcError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from quant.gguf_read import GGUFHeader, read_header
from quant.gguf_values import GGUFArray, GGUFFormatError, NotGGUFError
from toolchain.errors import MfcError

__all__ = ["GGUFArray", "GGUFError", "GGUFInfo", "read_gguf"]

_NOT_GGUF_HINT = "FROM and ADAPTER take a .gguf file, a folder holding one, or a model name"


class GGUFError(MfcError):
    """A file that is not a GGUF, or a GGUF that is truncated or malformed."""


@dataclass(frozen=True, slots=True)
class GGUFInfo(GGUFHeader):
    """A GGUF header whose tensors all lie inside the file."""

    @property
    def kind(self) -> str:
        """`general.type`: model, adapter, projector, mmproj ... (`unknown` if absent)."""
        return self.get_str("general.type", "unknown")

    @property
    def chat_template(self) -> str:
        return self.get_str("tokenizer.chat_template")

    @property
    def is_projector(self) -> bool:
        if self.kind in ("projector", "mmproj"):
            return True
        blocks = self.get_uint32(self.arch_key("block_count"))
        if blocks == 0 and self.get_uint32(self.arch_key("vision.block_count")) > 0:
            return True
        return (
            self.architecture == "clip"
            and blocks == 0
            and (
                self.get_bool(self.arch_key("has_vision_encoder"))
                or self.get_bool(self.arch_key("has_audio_encoder"))
            )
        )

    @property
    def is_lora_adapter(self) -> bool:
        return self.kind == "adapter" and self.get_str("adapter.type") == "lora"


def read_gguf(path: str | os.PathLike[str], *, full_arrays: bool = False) -> GGUFInfo:
    """Read a GGUF file's header; raises `GGUFError` for a non-GGUF, truncated or malformed file."""
    try:
        header = read_header(path, full_arrays=full_arrays)
        header.check_tensors()
    except NotGGUFError as exc:
        raise GGUFError(exc.message, hint=_NOT_GGUF_HINT) from None
    except GGUFFormatError as exc:
        raise GGUFError(exc.message, hint=exc.hint) from None
    return GGUFInfo(**{f.name: getattr(header, f.name) for f in fields(header)})
