"""Model management routes: /, version, tags, show, ps, copy, delete, blobs.

These read and change the store through its public API (`toolchain.store`); /api/create
lives in `api_create`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from runtime.context import api_handler, context_of
from runtime.durations import FOREVER, expiry
from runtime.errors import MODEL_REQUIRED, ApiError
from runtime.models import ServedModel, gguf_header
from runtime.requests import decode_request
from runtime.schemas import CopyRequest, DeleteRequest, ShowRequest
from runtime.streaming import json_response
from toolchain import OLLAMA_API_VERSION
from toolchain.describe import rfc3339, show_response
from toolchain.store import (
    InvalidNameError,
    ModelNotFoundError,
    StoredModel,
    is_digest,
    load_model,
    parse_name,
)


def _path_digest(request: Request) -> str:
    """The `{digest}` of a blob route, in a form the reference accepts (else 400)."""
    digest: str = request.path_params["digest"]
    if not is_digest(digest):
        raise ApiError(400, "invalid digest format")
    return digest


async def root_handler(request: Request) -> Response:
    return PlainTextResponse("Ollama is running")


async def version_handler(request: Request) -> Response:
    """The Ollama API version mfc implements (clients gate features on it); mfc's own
    version is in every response's `X-Mfc-Version` header."""
    return json_response({"version": OLLAMA_API_VERSION})


def _details(stored: StoredModel) -> dict[str, Any]:
    header = None
    if stored.config.file_type in ("", "unknown") and stored.model_path is not None:
        header = gguf_header(str(stored.model_path), stored.digest)
    return stored.details(header)


@api_handler()
async def tags_handler(request: Request) -> Response:
    ctx = context_of(request)

    def listing() -> list[dict[str, Any]]:
        out = []
        for entry in ctx.store.list_models():
            try:
                stored = load_model(ctx.store, entry.name)
            except Exception:
                continue  # a model with a broken layer is skipped, as the reference does
            name = entry.name.display()
            out.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": rfc3339(entry.modified),
                    "size": entry.size,
                    "digest": entry.digest,
                    "details": _details(stored),
                }
            )
        return out

    return json_response({"models": await asyncio.to_thread(listing)})


@api_handler()
async def show_handler(request: Request) -> Response:
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), ShowRequest)
    name = req.model or req.name
    if not name:
        raise ApiError(400, MODEL_REQUIRED)
    try:
        parsed = parse_name(name)
        stored = load_model(ctx.store, name)
    except InvalidNameError:
        raise ApiError(400, "invalid model name") from None
    except ModelNotFoundError:
        raise ApiError(404, f"model '{parsed.display()}' not found") from None
    if req.system:
        stored = dataclasses.replace(stored, system=req.system)
    if req.options:
        stored = dataclasses.replace(stored, parameters={**stored.parameters, **req.options})
    return json_response(await asyncio.to_thread(show_response, stored, verbose=req.verbose))


@api_handler()
async def ps_handler(request: Request) -> Response:
    ctx = context_of(request)
    models = []
    for runner in ctx.scheduler.running():
        model: ServedModel = runner.model
        models.append(
            {
                "name": model.name,
                "model": model.name,
                "size": runner.llama.size,
                "digest": model.digest,
                "details": model.details(),
                "expires_at": rfc3339(min(runner.expires_at, expiry(time.time(), FOREVER))),
                "size_vram": 0,
                "context_length": runner.num_ctx,
            }
        )
    return json_response({"models": models})


@api_handler()
async def copy_handler(request: Request) -> Response:
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), CopyRequest)
    source, destination = req.source, req.destination
    for label, value in (("source", source), ("destination", destination)):
        try:
            parse_name(value)
        except InvalidNameError:
            raise ApiError(400, f'{label} "{value}" is invalid') from None
    try:
        await asyncio.to_thread(ctx.store.copy, source, destination)
    except ModelNotFoundError:
        raise ApiError(404, f'model "{source}" not found') from None
    return Response(status_code=200)


@api_handler()
async def delete_handler(request: Request) -> Response:
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), DeleteRequest)
    name = req.model or req.name
    if not name:
        raise ApiError(400, MODEL_REQUIRED)
    try:
        parse_name(name)
    except InvalidNameError:
        raise ApiError(400, f'name "{name}" is invalid') from None
    try:
        await asyncio.to_thread(ctx.store.delete, name)
    except ModelNotFoundError:
        raise ApiError(404, f"model '{name}' not found") from None
    return Response(status_code=200)


@api_handler()
async def blob_head_handler(request: Request) -> Response:
    ctx = context_of(request)
    digest = _path_digest(request)
    if not ctx.store.blobs.exists(digest):
        raise ApiError(404, f'blob "{digest}" not found')
    return Response(status_code=200)


@api_handler()
async def blob_upload_handler(request: Request) -> Response:
    """Store the raw body as a blob; the digest in the path must match (as a string)."""
    ctx = context_of(request)
    digest = _path_digest(request)
    if ctx.store.blobs.exists(digest):
        return Response(status_code=200)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=16)

    def chunks() -> Iterator[bytes]:
        while True:
            item = asyncio.run_coroutine_threadsafe(queue.get(), loop).result()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def write() -> str:
        with ctx.store.shared_lock():
            return ctx.store.blobs.write_stream(chunks()).digest

    writer = loop.run_in_executor(None, write)
    try:
        async for chunk in request.stream():
            if chunk:
                await queue.put(chunk)
    except BaseException as exc:
        await queue.put(ConnectionError("client went away during the upload"))
        with contextlib.suppress(Exception):
            await writer
        if isinstance(exc, Exception):
            raise ApiError(499, "request canceled") from None
        raise
    await queue.put(None)
    actual = await writer
    if actual != digest:
        raise ApiError(400, f'digest mismatch, expected "{digest}", got "{actual}"')
    return Response(status_code=201)
