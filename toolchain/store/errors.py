"""Errors of the store: what a user can get wrong about names, models and blobs."""

from __future__ import annotations

from toolchain.errors import MfcError


class StoreError(MfcError):
    """A problem with the model store (its files, a manifest, a blob)."""


class InvalidNameError(StoreError):
    """A model name that does not parse to host/namespace/model:tag with valid parts."""


class ModelNotFoundError(StoreError):
    """The store holds no manifest for this name."""


class BlobError(StoreError):
    """A blob is missing, has a malformed digest, or its bytes don't match its digest."""
