"""HTTP plumbing: bodies with a size limit, JSON errors, NDJSON/SSE streams, disconnects.

A stream's first item is computed before the status line is sent, so a request that fails
early (unknown model, full queue) still gets its JSON error and status code; an error
after that is sent as a last `{"error": ...}` item, as the reference does. When the client
goes away, the item producer is cancelled (which cancels the generation behind it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from runtime.errors import BODY_TOO_LARGE, REQUEST_CANCELED, ApiError
from runtime.jsonfloat import RawJSON

T = TypeVar("T")

Encoder = Callable[[dict[str, Any]], bytes]
ErrorBody = Callable[[ApiError], dict[str, Any]]


def dumps(obj: Any) -> bytes:
    """Compact JSON, as Go writes it; a `RawJSON` value goes in as its bytes."""
    raws: list[bytes] = []
    marker = ""

    def raw(value: object) -> str:
        nonlocal marker
        if not isinstance(value, RawJSON):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        # a string no client text can hold: json escapes the NULs, the nonce is fresh
        marker = marker or f"\0{secrets.token_hex(8)}\0"
        raws.append(value.data)
        return f"{marker}{len(raws) - 1}{marker}"

    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=raw).encode()
    if not raws:
        return text
    quoted = json.dumps(marker).encode()[1:-1]
    parts = text.split(b'"' + quoted)
    out = [parts[0]]
    for part in parts[1:]:
        index, rest = part.split(quoted + b'"', 1)
        out += [raws[int(index)], rest]
    return b"".join(out)


def ndjson(obj: dict[str, Any]) -> bytes:
    return dumps(obj) + b"\n"


def sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json; charset=utf-8")


def ollama_error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": exc.message}


def error_response(exc: ApiError, body: ErrorBody = ollama_error_body) -> Response:
    return json_response(body(exc), exc.status)


def created_at(ns: int | None = None) -> str:
    """UTC now as Go's RFC3339Nano (trailing zeros of the fraction trimmed)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


async def read_chunks(request: Request, limit: int) -> list[bytes]:
    """The whole request body as the chunks it arrived in; 413 past `limit` bytes.

    Not joined: one 50 MB `bytes` join would hold the GIL for milliseconds on the event
    loop (`jsonbody.decode_async` takes chunks).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, BODY_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, BODY_TOO_LARGE)
            if chunk:
                chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(499, REQUEST_CANCELED) from None
    return chunks


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body; 413 past `limit` bytes."""
    return b"".join(await read_chunks(request, limit))


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race_disconnect(receive: Receive, work: Awaitable[T]) -> asyncio.Future[T]:
    """Run `work` until it ends or the client disconnects; then cancel it if still running.

    Returns the work's future (done, or cancelled because the client went away).
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError, OSError):
                await task
    return task


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (then 499)."""
    task = await _race_disconnect(request.receive, work)
    if task.cancelled():
        raise ApiError(499, REQUEST_CANCELED)
    return task.result()


async def progress_response(items: AsyncIterator[dict[str, Any]], stream: bool) -> Response:
    """Progress events (create, pull, push): NDJSON, or only the last one when not streaming."""
    if stream:
        return await stream_response(items)
    last: dict[str, Any] = {}
    async for item in items:
        last = item
    return json_response(last)


class ItemStream(Response):
    """A streamed response whose items come from an async iterator of dicts."""

    def __init__(
        self,
        first: dict[str, Any],
        rest: AsyncIterator[dict[str, Any]],
        *,
        encode: Encoder,
        media_type: str,
        error_body: ErrorBody = ollama_error_body,
        trailer: bytes = b"",
    ) -> None:
        super().__init__(None, 200, media_type=media_type)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.first = first
        self.rest = rest
        self.encode = encode
        self.error_body = error_body
        self.trailer = trailer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            await send(
                {"type": "http.response.body", "body": self.encode(self.first), "more_body": True}
            )
            try:
                async for item in self.rest:
                    await send(
                        {"type": "http.response.body", "body": self.encode(item), "more_body": True}
                    )
            except ApiError as exc:
                body = self.encode(self.error_body(exc))
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": self.trailer, "more_body": False})

        try:
            await _race_disconnect(receive, pump())
        finally:
            await _close(self.rest)


async def stream_response(
    items: AsyncIterator[dict[str, Any]],
    encode: Encoder = ndjson,
    media_type: str = "application/x-ndjson",
    error_body: ErrorBody = ollama_error_body,
    trailer: bytes = b"",
) -> Response:
    """Start streaming `items`; an error before the first item is a plain JSON error."""
    try:
        first = await anext(items)
    except ApiError as exc:
        await _close(items)
        return error_response(exc, error_body)
    except StopAsyncIteration:
        return Response(trailer, media_type=media_type)
    return ItemStream(
        first, items, encode=encode, media_type=media_type, error_body=error_body, trailer=trailer
    )


async def _close(items: AsyncIterator[Any]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()
