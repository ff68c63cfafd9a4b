"""/api/create: the reference's create request driven through `mfc build`'s passes.

The request names uploaded blobs (`files`, `adapters` by digest) or a model (`from`); this
module checks it up front with the reference's messages, turns it into the build's
`CreateRequest`, and streams the build's progress events as NDJSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runtime import schemas
from runtime.context import ServerContext, api_handler, context_of
from runtime.errors import INVALID_MODEL_NAME, MISSING_BODY, ApiError
from runtime.jsonbody import Number, decode_async
from runtime.metrics import tracked_operation
from runtime.requests import bind
from runtime.streaming import progress_response
from toolchain.build import CreateRequest, SourceDir, SourceFile, build
from toolchain.build.sources import buildable
from toolchain.errors import MfcError
from toolchain.progress import ProgressEvent
from toolchain.store import InvalidNameError, ModelName, Store, is_digest, parse_name


def valid_path(key: str) -> bool:
    """Go's fs.ValidPath: relative, slash-separated, no empty, `.` or `..` elements."""
    if key == ".":
        return True
    if not key or key.startswith("/") or key.endswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))


def _plain(value: Any) -> Any:
    """JSON values as the store's Go-JSON encoder takes them (our Number -> float)."""
    if isinstance(value, Number):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _licenses(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise ApiError(400, "unknown license type")


def check_request(store: Store, req: schemas.CreateRequest) -> ModelName:
    """The reference's up-front checks (400s), after the one that the body set any field;
    returns the model name to create."""
    for files in (req.files, req.draft_files):
        for key, digest in (files or {}).items():
            if not valid_path(key):
                raise ApiError(400, "file path must be relative")
            if not digest:
                raise ApiError(400, "invalid digest format")
    for digest in (req.adapters or {}).values():
        if not digest:
            raise ApiError(400, "invalid digest format")
    if req.draft_quantize and not req.draft_files:
        raise ApiError(400, "--draft-quantize requires a DRAFT model")
    try:
        name = parse_name(req.model or req.name)
    except InvalidNameError:
        raise ApiError(400, INVALID_MODEL_NAME) from None
    if req.from_:
        try:
            parse_name(req.from_)
        except InvalidNameError:
            raise ApiError(400, INVALID_MODEL_NAME) from None
    elif req.files is None:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    return name


def _sources(store: Store, files: dict[str, str]) -> list[SourceFile]:
    out = []
    for key, digest in sorted(files.items()):
        if not is_digest(digest):
            raise ApiError(400, "invalid digest format")
        if not store.blobs.exists(digest):
            raise ApiError(
                400, f'blob "{digest}" not found: upload it with POST /api/blobs/{digest}'
            )
        out.append(SourceFile(key=key, path=store.blobs.path(digest), digest=digest))
    return out


def _folder(store: Store, sources: list[SourceFile]) -> SourceDir:
    """A Hugging Face folder for the converter: blobs linked under their file names, in the
    store's temp area (named for this process, so a server killed mid-create leaves nothing
    that the next writer to the store does not clear)."""
    folder = store.blobs.temp_dir()
    for src in sources:
        target = folder / PurePosixPath(src.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(src.path)
    return SourceDir(folder)


def _classified(
    store: Store, sources: list[SourceFile], *, adapter: bool, temps: list[Path]
) -> tuple[list[SourceFile], tuple[SourceDir, ...]]:
    """The request's GGUF files, or its files linked into a folder for the converter:
    classified as `mfc build` classifies a folder with these files in it."""
    if not sources:
        return [], ()
    where = "the request's " + ("adapters" if adapter else "files")
    found = buildable({f.key: f.path for f in sources}, where=where, span=None, adapter=adapter)
    if not found.convert:
        return [f for f in sources if f.key in found.weights], ()
    folder = _folder(store, sources)
    temps.append(folder.path)
    return [], (folder,)


def create_request(store: Store, req: schemas.CreateRequest) -> tuple[CreateRequest, list[Path]]:
    """The build's CreateRequest for an API request, and temp folders to remove afterwards."""
    temps: list[Path] = []
    files, convert = _classified(
        store, _sources(store, req.files or {}), adapter=False, temps=temps
    )
    adapters, adapter_dirs = _classified(
        store, _sources(store, req.adapters or {}), adapter=True, temps=temps
    )
    messages = tuple(
        (str(m.get("role", "")).lower(), str(m.get("content", ""))) for m in req.messages or []
    )
    request = CreateRequest(
        from_model=req.from_,
        files=tuple(files),
        convert_dirs=convert,
        adapters=tuple(adapters),
        adapter_dirs=adapter_dirs,
        draft_files=tuple(_sources(store, req.draft_files or {})),
        template=req.template,
        system=req.system,
        licenses=_licenses(req.license),
        parameters=_plain(req.parameters or {}),
        messages=messages,
        requires=req.requires,
        renderer=req.renderer,
        parser=req.parser,
        quantize=req.quantize or req.quantization,
    )
    return request, temps


def without_temps(message: str, temps: list[Path]) -> str:
    """An error about a file of a request's temp folder names the file as the request did
    (`model.safetensors`), not where the server linked it."""
    for folder in temps:
        message = message.replace(f"{folder}/", "").replace(str(folder), ".")
    return message


class CreateAbandoned(BaseException):
    """Raised in the build's thread at its next progress report once nobody waits for the
    build any more (the client went away, or the server is shutting down): the build
    unwinds as on Ctrl-C, stopping quantize workers and removing its temp files."""


async def create_events(
    ctx: ServerContext, name: ModelName, req: schemas.CreateRequest
) -> AsyncIterator[dict[str, Any]]:
    """Run the build in a thread; yield its progress events, then `success`."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[ProgressEvent | BaseException | None] = asyncio.Queue()
    abandoned = threading.Event()

    def put(item: ProgressEvent | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(events.put_nowait, item)

    def emit(event: ProgressEvent) -> None:
        if abandoned.is_set():
            raise CreateAbandoned
        put(event)

    temps: list[Path] = []

    def run() -> None:
        try:
            request, folders = create_request(ctx.store, req)
            temps.extend(folders)
            build(ctx.store, name, request, progress=emit)
        except CreateAbandoned:
            pass
        except BaseException as exc:
            put(exc)
        else:
            put(None)
        finally:
            for tmp in temps:
                shutil.rmtree(tmp, ignore_errors=True)

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            item = await events.get()
            if item is None:
                return
            if isinstance(item, ApiError):
                raise item
            if isinstance(item, MfcError):
                raise ApiError(400, without_temps(item.message, temps))
            if isinstance(item, BaseException):
                raise ApiError(500, str(item) or type(item).__name__)
            yield item.to_json()
    finally:
        abandoned.set()  # a no-op once the build is done
        await asyncio.shield(worker)


@api_handler()
async def create_handler(request: Request) -> Response:
    ctx = context_of(request)
    fields = await decode_async(await ctx.body(request), schemas.CREATE)
    if not fields:
        raise ApiError(400, MISSING_BODY)
    req = bind(schemas.CreateRequest, fields)
    name = check_request(ctx.store, req)
    operation = "quantize" if req.quantize else "create"
    events = tracked_operation(create_events(ctx, name, req), operation)
    return await progress_response(events, req.stream is not False)
