"""Errors of `mfc build`: each names the problem and, through its span, the Modelfile line."""

from __future__ import annotations

from toolchain.errors import MfcError


class BuildError(MfcError):
    """A build input is wrong: a missing or unusable file, an unknown base model, a bad type."""
