"""Errors the HTTP API returns: a status code and the reference's exact message."""

from __future__ import annotations

from toolchain.errors import MfcError

#: Messages the reference returns verbatim (spec store_api.md §3).
MODEL_REQUIRED = "model is required"
INVALID_MODEL_NAME = "invalid model name"
MISSING_BODY = "missing request body"
SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"
REQUEST_CANCELED = "request canceled"
BODY_TOO_LARGE = "http: request body too large"


class ApiError(MfcError):
    """A request the server refuses: `status` is the HTTP code, `message` the body's error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServerBusyError(ApiError):
    """The pending-request queue is full (`OLLAMA_MAX_QUEUE`)."""

    def __init__(self) -> None:
        super().__init__(503, SERVER_BUSY)


class ModelLoadError(ApiError):
    """llama.cpp refused the model file, adapter or context parameters."""

    def __init__(self, message: str) -> None:
        super().__init__(500, message)


def not_found(model: str) -> ApiError:
    """The reference's 404 for a model missing from the store."""
    return ApiError(404, f"model '{model}' not found")
