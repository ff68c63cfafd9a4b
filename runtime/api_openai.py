"""OpenAI-compatible routes, mapped onto the Ollama handlers the way the reference does.

Requests are translated into /api/chat, /api/generate or /api/embed requests, run through
the same code, and the answers translated back (SSE when streaming, `data: [DONE]` last).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from runtime.api_embed import embed, encode_floats
from runtime.api_ollama import collect, prepare_chat, prepare_generate
from runtime.context import api_handler, context_of
from runtime.errors import ApiError
from runtime.generation import now_ns
from runtime.jsonfloat import RawJSON
from runtime.openai_logprobs import chat_logprobs, completion_logprobs
from runtime.openai_requests import chat_request, generate_request
from runtime.requests import decode_request
from runtime.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbedRequest,
    OpenAIEmbedRequest,
)
from runtime.streaming import json_response, sse, stream_response, until_disconnect
from toolchain.store import parse_name
from toolchain.store.names import parse_name_lenient

Items = AsyncIterator[dict[str, Any]]
FINGERPRINT = "fp_ollama"


def openai_error(exc: ApiError) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(exc.status, "api_error")
    return {"error": {"message": exc.message, "type": kind, "param": None, "code": None}}


def _usage(final: dict[str, Any]) -> dict[str, int]:
    p, c = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason in ("stop", "length"):
        return "tool_calls" if has_calls and reason == "stop" else reason
    return None


def _oai_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": c.get("id", ""),
            "index": c["function"].get("index", i),
            "type": "function",
            "function": {
                "name": c["function"]["name"],
                "arguments": json.dumps(c["function"]["arguments"]),
            },
        }
        for i, c in enumerate(calls)
    ]


async def _chat_chunks(items: Items, head: dict[str, Any], include_usage: bool) -> Items:
    first = True
    has_calls = False
    async for item in items:
        msg = item.get("message", {})
        if not item.get("done"):
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            first = False
            choices: list[dict[str, Any]] = []
            if msg.get("thinking"):
                reasoning = {**delta, "reasoning": msg["thinking"]}
                choices.append({"index": 0, "delta": reasoning, "finish_reason": None})
                delta = {}
            if msg.get("tool_calls"):
                has_calls = True
                delta["tool_calls"] = _oai_calls(msg["tool_calls"])
            logprobs = item.get("logprobs")
            if msg.get("content") or delta or (logprobs and not choices):
                delta["content"] = msg.get("content", "")
                choices.append({"index": 0, "delta": delta, "finish_reason": None})
            if logprobs:  # on the first chunk of the piece, as the reference splits them
                choices[0]["logprobs"] = chat_logprobs(logprobs)
            for choice in choices:
                yield {**head, "choices": [choice]}
            continue
        reason = _finish(item.get("done_reason"), has_calls)
        yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
        if include_usage:
            yield {**head, "choices": [], "usage": _usage(item)}


def _head(kind: str, model: str) -> dict[str, Any]:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {
        "id": f"{prefix}-{random.randint(0, 998)}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
    }


@api_handler(openai_error)
async def chat_completions_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), ChatCompletionRequest)
    ollama = chat_request(req)
    items = await prepare_chat(ctx, ollama, start)
    return await _answer(request, req, items, ollama.model, chat=True)


def _chat_choice(final: dict[str, Any]) -> dict[str, Any]:
    msg = final.get("message", {})
    message: dict[str, Any] = {"role": "assistant", "content": msg.get("content", "")}
    if msg.get("thinking"):
        message["reasoning"] = msg["thinking"]
    if msg.get("tool_calls"):
        message["tool_calls"] = _oai_calls(msg["tool_calls"])
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": _finish(final.get("done_reason"), bool(msg.get("tool_calls"))),
    }
    if final.get("logprobs"):
        choice["logprobs"] = chat_logprobs(final["logprobs"])
    return choice


async def _completion_chunks(items: Items, head: dict[str, Any], include_usage: bool) -> Items:
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    offset = 0
    async for item in items:
        done = bool(item.get("done"))
        reason = _finish(item.get("done_reason"), False) if done else None
        text = item.get("response", "")
        choice: dict[str, Any] = {"text": text, "index": 0, "finish_reason": reason}
        if item.get("logprobs"):
            choice["logprobs"] = completion_logprobs(item["logprobs"], offset)
        offset += len(text)
        chunk = {**head, "choices": [choice]}
        if include_usage:
            chunk["usage"] = zero
        yield chunk
        if done and include_usage:
            yield {**head, "choices": [], "usage": _usage(item)}


@api_handler(openai_error)
async def completions_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), CompletionRequest)
    ollama = generate_request(req)
    items = await prepare_generate(ctx, ollama, start)
    return await _answer(request, req, items, ollama.model, chat=False)


def _completion_choice(final: dict[str, Any]) -> dict[str, Any]:
    choice = {
        "text": final.get("response", ""),
        "index": 0,
        "finish_reason": _finish(final.get("done_reason"), False),
    }
    if final.get("logprobs"):
        choice["logprobs"] = completion_logprobs(final["logprobs"])
    return choice


async def _answer(
    request: Request,
    req: ChatCompletionRequest | CompletionRequest,
    items: Items,
    model: str,
    *,
    chat: bool,
) -> Response:
    """The chat or text completion of `items`: streamed as server-sent chunks (`data:
    [DONE]` last) when `req` asks, else collected into one response."""
    if req.stream:
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        if chat:
            chunks = _chat_chunks(items, _head("chat.completion.chunk", model), include_usage)
        else:
            chunks = _completion_chunks(items, _head("text_completion", model), include_usage)
        return await stream_response(
            chunks, sse, "text/event-stream", openai_error, b"data: [DONE]\n\n"
        )
    final = await until_disconnect(request, collect(items, chat=chat))
    choice = _chat_choice(final) if chat else _completion_choice(final)
    kind = "chat.completion" if chat else "text_completion"
    return json_response({**_head(kind, model), "choices": [choice], "usage": _usage(final)})


@api_handler(openai_error)
async def embeddings_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), OpenAIEmbedRequest)
    raw = req.input
    if raw == "":
        raw = [""]
    if raw is None or raw == []:
        raise ApiError(400, "invalid input")
    encoding = req.encoding_format or "float"
    if encoding.lower() not in ("float", "base64"):
        supported = "Supported values: ['float', 'base64']."
        raise ApiError(400, f"Invalid value for 'encoding_format' = {encoding}. {supported}")
    result = await embed(
        ctx,
        EmbedRequest(model=req.model, input=raw, dimensions=req.dimensions),
        start,
    )
    data = []
    vectors: np.ndarray = result["embeddings"]  # (n, d) float32
    if encoding.lower() == "base64":
        values: list[Any] = [
            base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii") for vec in vectors
        ]
    else:
        text = await encode_floats(vectors)  # [[...],[...]]: rows cut apart, not re-encoded
        values = [RawJSON(b"[" + row + b"]") for row in text[2:-2].split(b"],[")]
        values = values if len(vectors) else []
    for i, value in enumerate(values):
        data.append({"object": "embedding", "embedding": value, "index": i})
    tokens = result.get("prompt_eval_count", 0)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@api_handler(openai_error)
async def models_handler(request: Request) -> Response:
    ctx = context_of(request)
    data = [
        {
            "id": e.name.display(),
            "object": "model",
            "created": int(e.modified),
            "owned_by": e.name.namespace,
        }
        for e in ctx.store.list_models()
    ]
    return json_response({"object": "list", "data": data or None})


@api_handler(openai_error)
async def model_handler(request: Request) -> Response:
    ctx = context_of(request)
    name = request.path_params["model"]
    try:
        stored = ctx.catalog.stored(name)
        parse_name(name)
    except Exception:
        raise ApiError(404, f"model '{name}' not found") from None
    return json_response(
        {
            "id": name,
            "object": "model",
            "created": int(stored.modified),
            "owned_by": parse_name_lenient(name).namespace,
        }
    )
