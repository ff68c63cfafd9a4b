"""/api/pull and /api/push: the registry transfers of `toolchain.registry`, streamed as NDJSON.

The transfer runs on a worker thread (`pull_events`/`push_events`); its progress events are
the reference's ProgressResponse objects, ending with `{"status":"success"}`. A failure
after the stream started is a last `{"error": ...}` line; with `"stream": false` the
response is the last event, or the error with status 500 (store_api.md §2.10, §3.11).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runtime.context import api_handler, context_of
from runtime.errors import INVALID_MODEL_NAME, MODEL_REQUIRED, ApiError
from runtime.jsonbody import BOOL, STRING, decode_async, struct
from runtime.metrics import tracked_operation
from runtime.streaming import json_response, stream_response
from toolchain.errors import MfcError
from toolchain.progress import ProgressEvent
from toolchain.registry import EventStream, pull_events, push_events
from toolchain.store import InvalidNameError, Store, parse_name

#: api.PullRequest / api.PushRequest (`username`/`password` are accepted and ignored)
TRANSFER = struct(
    "api.PullRequest",
    {
        "model": STRING,
        "name": STRING,
        "insecure": BOOL,
        "stream": BOOL,
        "username": STRING,
        "password": STRING,
    },
)

Events = Callable[..., EventStream]
_END = object()


async def _items(events: EventStream) -> AsyncIterator[dict[str, Any]]:
    """The sync event iterator, read on a worker thread; errors become ApiError(500)."""
    try:
        while True:
            try:
                event = await asyncio.to_thread(next, events, _END)
            except MfcError as exc:
                raise ApiError(500, exc.message) from None
            if event is _END:
                return
            assert isinstance(event, ProgressEvent)
            yield event.to_json()
    finally:
        events.close()  # a no-op when it ended; else (client gone) the transfer stops


async def _transfer(
    request: Request, start: Events, operation: str, *, empty_is_required: bool
) -> Response:
    ctx = context_of(request)
    req = await decode_async(await ctx.body(request), TRANSFER)
    raw = req.get("model") or req.get("name") or ""
    if not raw and empty_is_required:
        raise ApiError(400, MODEL_REQUIRED)
    try:
        parse_name(raw)
    except InvalidNameError:
        raise ApiError(400, INVALID_MODEL_NAME) from None
    store: Store = ctx.store
    items = tracked_operation(
        _items(start(raw, insecure=bool(req.get("insecure")), store=store)), operation
    )
    if req.get("stream", True):
        return await stream_response(items)
    last: dict[str, Any] = {}
    async for item in items:
        last = item
    return json_response(last)


@api_handler()
async def pull_handler(request: Request) -> Response:
    return await _transfer(request, pull_events, "pull", empty_is_required=False)


@api_handler()
async def push_handler(request: Request) -> Response:
    return await _transfer(request, push_events, "push", empty_is_required=True)
