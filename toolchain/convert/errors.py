"""The converter's user errors: each one names the file that is wrong."""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import MfcError


class ConvertError(MfcError):
    """A Hugging Face directory (or LoRA adapter) that cannot be converted.

    `file` is the offending file (or directory); the message starts with it so the CLI's
    one-line diagnostic already says where to look.
    """

    def __init__(self, file: Path | str, message: str, hint: str | None = None) -> None:
        self.file = str(file)
        super().__init__(f"{self.file}: {message}", hint=hint)
