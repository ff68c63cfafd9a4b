"""Operations: `/metrics`, `/health`, `/ready`, request ids, access logs, drain, preload.

`Ops` is one per app. Its middleware gives every request an id (`X-Request-Id`, taken from
the request when it carries a sane one, echoed in the response), a `RequestRecord` the
request path fills in, a line in the access log and its request metrics; once a drain has
begun it answers new requests 503 with `Retry-After` before reading them, so a load
balancer can retry them elsewhere. The probes and `/metrics` are always served.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Sequence

from prometheus_client.exposition import choose_encoder
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api_ollama import merged_options
from runtime.context import ServerContext
from runtime.errors import ApiError
from runtime.metrics import (
    Metrics,
    RequestRecord,
    readiness,
    reset_current_request,
    set_current_request,
)
from runtime.models import Catalog
from runtime.streaming import dumps, json_response
from toolchain.errors import MfcError
from toolchain.store import Store

log = logging.getLogger("mfc.serve")
access_log = logging.getLogger("mfc.access")

SHUTTING_DOWN = "server is shutting down"
RETRY_AFTER = "5"
PROBE_ROUTES = ("/health", "/ready", "/metrics")
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class Ops:
    """Readiness, drain and metrics state of one app."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.metrics = Metrics(ctx.scheduler)
        self.state = self.metrics.state
        self.active: set[RequestRecord] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._preload: asyncio.Task[None] | None = None

    # --- readiness and preload ---------------------------------------------------------

    def readiness(self) -> str:
        return readiness(self.state, self.ctx.scheduler.inflight)

    def start_preload(self) -> None:
        """Load `config.preload` models in the background; not ready until they are."""
        names = self.ctx.config.preload
        if not names:
            return
        self.state.preloading = True
        self._preload = asyncio.get_running_loop().create_task(self._load_all(names))

    async def _load_all(self, names: Sequence[str]) -> None:
        try:
            for name in names:
                model = self.ctx.catalog.get(name, f"model '{name}' not found")
                lease = await self.ctx.scheduler.acquire(model, merged_options(model, None), None)
                lease.release()
                log.info("preloaded %s", name)
        except Exception as exc:
            self.state.preload_error = str(getattr(exc, "message", "") or exc)
            log.error("preloading failed: %s", self.state.preload_error)
        finally:
            self.state.preloading = False

    async def stop_preload(self) -> None:
        if self._preload is not None and not self._preload.done():
            self._preload.cancel()
            await asyncio.gather(self._preload, return_exceptions=True)

    # --- drain ---------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Refuse new requests from now on (readiness turns 503)."""
        self.state.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight; False if `timeout` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def cut(self) -> int:
        """End every in-flight generation now (their streams end with an error item), and
        those of requests still waiting for their model once they start; returns how many
        were running."""
        return sum(record.cut_now() for record in list(self.active))

    def _enter(self, record: RequestRecord) -> None:
        self.active.add(record)
        self._idle.clear()

    def _leave(self, record: RequestRecord) -> None:
        self.active.discard(record)
        if not self.active:
            self._idle.set()

    # --- handlers ------------------------------------------------------------------------

    async def metrics_handler(self, request: Request) -> Response:
        # the format the scraper asks for: OpenMetrics for Prometheus, else text 0.0.4
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.metrics.registry), headers={"content-type": content_type})

    async def health_handler(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready_handler(self, request: Request) -> Response:
        status = self.readiness()
        body: dict[str, str] = {"status": status}
        if status == "preload failed":
            body["error"] = self.state.preload_error
        return json_response(body, 200 if status == "ready" else 503)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/metrics", self.metrics_handler, methods=["GET"]),
            Route("/health", self.health_handler, methods=["GET", "HEAD"]),
            Route("/ready", self.ready_handler, methods=["GET", "HEAD"]),
        ]


class PreloadError(MfcError):
    """A model to preload is not in the store."""


def check_preload(store: Store, names: Sequence[str]) -> None:
    """Fail before serving when a model to preload is not in the store (or has no weights)."""
    catalog = Catalog(store)
    for name in names:
        try:
            catalog.get(name, f"model '{name}' not found")
        except ApiError as exc:
            raise PreloadError(
                f"cannot preload {name}: {exc.message}", hint="see `mfc list`"
            ) from None


def request_id(raw: str | None) -> str:
    """The client's id when it is printable ASCII of at most 128 characters, else a new one."""
    if raw is not None and _REQUEST_ID.match(raw):
        return raw
    return uuid.uuid4().hex


def route_of(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The route template a request matches (`/api/blobs/{digest}`), else `other`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE and isinstance(route, Route):
            return route.path
    return "other"


class OpsMiddleware:
    """Request ids, request metrics, access log, and refusal while draining."""

    def __init__(self, app: ASGIApp, ops: Ops, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.ops = ops
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ops = self.ops
        rid = request_id(Headers(scope=scope).get("x-request-id"))
        route = route_of(self.routes, scope)
        record = RequestRecord(ops.metrics, request_id=rid)
        status = 500
        header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        probe = route in PROBE_ROUTES
        if ops.state.draining and not probe:
            await _refuse(send_with_id)
            self._finish(scope, route, record, 503)
            return
        token = set_current_request(record)
        if not probe:
            ops._enter(record)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            reset_current_request(token)
            if not probe:
                ops._leave(record)
            self._finish(scope, route, record, status)

    def _finish(self, scope: Scope, route: str, record: RequestRecord, status: int) -> None:
        seconds = time.perf_counter() - record.started
        method = scope["method"]
        m = self.ops.metrics
        m.requests.labels(method=method, route=route, model=record.model, status=str(status)).inc()
        m.request_seconds.labels(route=route, model=record.model).observe(seconds)
        if route in PROBE_ROUTES and status < 400:
            return  # probes and scrapes every few seconds would drown the log
        client = scope.get("client") or ("", 0)
        fields = {
            "request_id": record.request_id,
            "client": client[0],
            "method": method,
            "path": scope["path"],
            "status": status,
            "model": record.model,
            "prompt_tokens": record.prompt_tokens,
            "eval_tokens": record.eval_tokens,
            "duration_ms": round(seconds * 1000, 3),
            "ttft_ms": round((record.first_token - record.started) * 1000, 3)
            if record.first_token
            else None,
        }
        access_log.info(
            '%s "%s %s" %d model=%s prompt_tokens=%d eval_tokens=%d %.1fms id=%s',
            fields["client"], method, scope["path"], status, record.model or "-",
            record.prompt_tokens, record.eval_tokens, seconds * 1000, record.request_id,
            extra={"fields": fields},
        )  # fmt: skip


async def _refuse(send: Send) -> None:
    """503 before reading the request: a proxy may send it to another replica."""
    body = dumps({"error": SHUTTING_DOWN})
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", RETRY_AFTER.encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
