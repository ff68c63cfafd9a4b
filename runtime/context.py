"""What every handler reaches: configuration, the store view, the scheduler."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from runtime.config import ServerConfig
from runtime.errors import ApiError
from runtime.models import Catalog
from runtime.scheduler import Scheduler
from runtime.streaming import ErrorBody, error_response, ollama_error_body, read_chunks
from toolchain.errors import MfcError
from toolchain.store import Store

log = logging.getLogger("mfc.serve")

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class ServerContext:
    config: ServerConfig
    store: Store
    catalog: Catalog
    scheduler: Scheduler

    async def body(self, request: Request) -> list[bytes]:
        """The request body, in the chunks it arrived in (see `read_chunks`)."""
        return await read_chunks(request, self.config.max_body_bytes)


def context_of(request: Request) -> ServerContext:
    ctx = request.app.state.mfc
    assert isinstance(ctx, ServerContext)
    return ctx


def api_handler(error_body: ErrorBody = ollama_error_body) -> Callable[[Handler], Handler]:
    """Turn a handler's errors into the reference's JSON error responses."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)
            except ApiError as exc:
                return error_response(exc, error_body)
            except MfcError as exc:
                return error_response(ApiError(400, exc.message), error_body)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                return error_response(ApiError(500, str(exc) or type(exc).__name__), error_body)

        return handler

    return wrap
