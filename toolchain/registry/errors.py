"""Errors of the distribution area: what a registry, the network or a tarball did wrong."""

from __future__ import annotations

from toolchain.errors import MfcError


class RegistryError(MfcError):
    """A registry refused a request, could not be reached, or answered something unusable."""


class RegistryBusyError(RegistryError):
    """A transient failure (5xx, 429): worth retrying."""


class AuthError(RegistryError):
    """The registry wants credentials we do not have, or rejected the ones we sent."""


class DigestMismatchError(RegistryError):
    """Bytes received (from a registry or a tarball) do not hash to the digest that named them."""

    def __init__(self, want: str, got: str, hint: str | None = None) -> None:
        super().__init__(
            f"digest mismatch, file must be downloaded again: want {want}, got {got}",
            hint=hint,
        )
        self.want = want
        self.got = got


class LayoutError(MfcError):
    """An OCI image-layout tarball is malformed or does not match its own digests."""
