"""Errors of the store: what a user can get wrong about names, models and blobs."""

from __future__ import annotations

from toolchain.errors import MfcError


class StoreError(MfcError):
    """A problem with the model store (its files, a manifest, a blob)."""


class StoreBusyError(StoreError):
    """Another process holds the store's lock and we chose not to wait for it."""


class InvalidNameError(StoreError):
    """A model name that does not parse to host/namespace/model:tag with valid parts."""


class ModelNotFoundError(StoreError):
    """The store holds no manifest for this name."""


class BlobError(StoreError):
    """A blob is missing, has a malformed digest, or its bytes don't match its digest."""


class BlobMismatchError(BlobError):
    """Bytes that were to become the blob `want` hash to `got` instead (nothing was kept)."""

    def __init__(self, want: str, got: str, message: str | None = None) -> None:
        super().__init__(message or f"digest mismatch: expected {want}, got {got}")
        self.want = want
        self.got = got
