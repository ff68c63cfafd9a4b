"""The ASGI application: the reference's route table, CORS and host checks, and lifespan."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import api_create, api_embed, api_models, api_ollama, api_openai, api_transfer
from runtime.config import ServerConfig
from runtime.context import ServerContext
from runtime.decodepool import POOL
from runtime.models import Catalog
from runtime.ops import Ops, OpsMiddleware
from runtime.scheduler import Scheduler
from runtime.version import VersionHeaderMiddleware
from toolchain.store import Store

ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "user-agent",
    "accept",
    "x-requested-with",
    "openai-beta",
)
BROWSER_EXTENSIONS = ("chrome-extension://*", "moz-extension://*", "safari-web-extension://*")
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"

ROUTES = [
    Route("/", api_models.root_handler, methods=["GET", "HEAD"]),
    Route("/api/version", api_models.version_handler, methods=["GET", "HEAD"]),
    Route("/api/tags", api_models.tags_handler, methods=["GET", "HEAD"]),
    Route("/api/show", api_models.show_handler, methods=["POST"]),
    Route("/api/ps", api_models.ps_handler, methods=["GET"]),
    Route("/api/copy", api_models.copy_handler, methods=["POST"]),
    Route("/api/delete", api_models.delete_handler, methods=["DELETE"]),
    Route("/api/create", api_create.create_handler, methods=["POST"]),
    Route("/api/pull", api_transfer.pull_handler, methods=["POST"]),
    Route("/api/push", api_transfer.push_handler, methods=["POST"]),
    Route("/api/blobs/{digest}", api_models.blob_head_handler, methods=["HEAD"]),
    Route("/api/blobs/{digest}", api_models.blob_upload_handler, methods=["POST"]),
    Route("/api/generate", api_ollama.generate_handler, methods=["POST"]),
    Route("/api/chat", api_ollama.chat_handler, methods=["POST"]),
    Route("/api/embed", api_embed.embed_handler, methods=["POST"]),
    Route("/api/embeddings", api_embed.embeddings_handler, methods=["POST"]),
    Route("/v1/chat/completions", api_openai.chat_completions_handler, methods=["POST"]),
    Route("/v1/completions", api_openai.completions_handler, methods=["POST"]),
    Route("/v1/embeddings", api_openai.embeddings_handler, methods=["POST"]),
    Route("/v1/models", api_openai.models_handler, methods=["GET"]),
    Route("/v1/models/{model:path}", api_openai.model_handler, methods=["GET"]),
]


def origin_pattern(origins: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for the allowed origins (`*` matches anything, as with AllowWildcard)."""
    parts = [re.escape(o).replace(r"\*", ".*") for o in (*origins, *BROWSER_EXTENSIONS)]
    return re.compile("^(?:" + "|".join(parts) + r")\Z")  # `$` would allow a trailing newline


def _host_allowed(host_header: str) -> bool:
    host = host_header
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.lower()
    if host in ("localhost", socket.gethostname().lower()) or host.endswith(
        (".localhost", ".local", ".internal")
    ):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


class GateMiddleware:
    """CORS for the allowed origins, and the host check of a loopback-bound server."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.origins = origin_pattern(config.origins)
        self.check_host = config.host in (
            "127.0.0.1",
            "localhost",
            "::1",
        ) or config.host.startswith("127.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.check_host and not _host_allowed(headers.get("host", "localhost")):
            await PlainTextResponse("", status_code=403)(scope, receive, send)
            return
        origin = headers.get("origin")
        allowed = origin is not None and self.origins.match(origin) is not None
        if scope["method"] == "OPTIONS":
            response = Response(status_code=204)
            if allowed and origin is not None:
                response.headers.update(self._cors(origin))
                response.headers["access-control-allow-methods"] = ALLOWED_METHODS
                requested = headers.get("access-control-request-headers", "")
                ok = [h.strip() for h in requested.split(",") if _header_ok(h.strip())]
                if ok:
                    response.headers["access-control-allow-headers"] = ", ".join(ok)
                response.headers["access-control-max-age"] = "43200"
            elif origin is not None:
                response = Response(status_code=403)
            await response(scope, receive, send)
            return
        if origin is not None and not allowed:
            await PlainTextResponse("", status_code=403)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and allowed and origin is not None:
                raw = list(message.get("headers", []))
                raw += [(k.encode(), v.encode()) for k, v in self._cors(origin).items()]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _cors(origin: str) -> dict[str, str]:
        return {"access-control-allow-origin": origin, "vary": "Origin"}


def _header_ok(name: str) -> bool:
    lower = name.lower()
    return lower in ALLOWED_HEADERS or lower.startswith("x-stainless-")


async def _not_found(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return PlainTextResponse("405 method not allowed", status_code=405)
    return PlainTextResponse("404 page not found", status_code=404)


def create_app(config: ServerConfig, store: Store | None = None) -> Starlette:
    """The server's ASGI app over `store` (default: the store the environment names)."""
    store = store if store is not None else Store.open(config.models_root)
    ctx = ServerContext(
        config=config, store=store, catalog=Catalog(store), scheduler=Scheduler(config)
    )

    ops = Ops(ctx)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if ctx.scheduler.probe is not None:  # the load probes' forker, before the first load
            await asyncio.to_thread(ctx.scheduler.probe.warm)
        ops.start_preload()
        try:
            yield
        finally:
            await ops.stop_preload()
            await ctx.scheduler.shutdown()
            await asyncio.to_thread(POOL.stop)  # the body decoders (runtime/decodepool.py)

    routes = [*ROUTES, *ops.routes()]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_found},
    )
    app.state.mfc = ctx
    app.state.ops = ops
    app.add_middleware(GateMiddleware, config=config)
    app.add_middleware(OpsMiddleware, ops=ops, routes=routes)  # sees every answer of the app
    app.add_middleware(VersionHeaderMiddleware)  # outermost: refusals carry it too
    return app
