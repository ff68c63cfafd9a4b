"""OpenAI-compatible routes, mapped onto the Ollama handlers the way the reference does.

Requests are translated into /api/chat, /api/generate or /api/embed requests, run through
the same code, and the answers translated back (SSE when streaming, `data: [DONE]` last).
"""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runtime.api_embed import embed
from runtime.api_ollama import collect, prepare_chat, prepare_generate
from runtime.context import api_handler, context_of
from runtime.errors import ApiError
from runtime.generation import now_ns
from runtime.jsonbody import decode_async, go_type_name
from runtime.openai_logprobs import chat_logprobs, completion_logprobs
from runtime.schemas import (
    OAI_CHAT,
    OAI_COMPLETION,
    OAI_EMBED,
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
)
from runtime.streaming import json_response, sse, stream_response, until_disconnect
from toolchain.gojson import loads
from toolchain.store import parse_name
from toolchain.store.names import parse_name_lenient

Items = AsyncIterator[dict[str, Any]]
FINGERPRINT = "fp_ollama"
_EFFORT: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


def openai_error(exc: ApiError) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(exc.status, "api_error")
    return {"error": {"message": exc.message, "type": kind, "param": None, "code": None}}


def _image(url: Any) -> str:
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str):
        raise ApiError(400, "invalid image input")
    if url.startswith(("http://", "https://")):
        raise ApiError(
            400, "image URLs are not currently supported, please use base64 encoded data instead"
        )
    for prefix in (
        "data:image/jpeg;base64,",
        "data:image/jpg;base64,",
        "data:image/png;base64,",
        "data:image/webp;base64,",
        "data:;base64,",
    ):
        if url.startswith(prefix):
            return url[len(prefix) :]
    raise ApiError(400, "invalid image input")


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as Ollama messages (each content part becomes its own message)."""
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for m in messages:
        role = m.get("role", "")
        content = m.get("content")
        base: dict[str, Any] = {"role": role}
        if m.get("reasoning"):
            base["thinking"] = m["reasoning"]
        calls = []
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            try:
                args = loads(fn.get("arguments") or "{}")
            except json.JSONDecodeError:
                raise ApiError(400, "invalid tool call arguments") from None
            if call.get("id"):
                call_names[call["id"]] = fn.get("name", "")
            calls.append(
                {
                    "id": call.get("id", ""),
                    "function": {"name": fn.get("name", ""), "arguments": args},
                }
            )
        if calls:
            base["tool_calls"] = calls
        if role == "tool":
            base["tool_name"] = m.get("name") or call_names.get(m.get("tool_call_id", ""), "")
            if m.get("tool_call_id"):
                base["tool_call_id"] = m["tool_call_id"]
        if isinstance(content, str) or (content is None and calls):
            out.append({**base, "content": content or ""})
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    out.append({**base, "content": part.get("text", "")})
                elif kind == "image_url":
                    out.append({**base, "content": "", "images": [_image(part.get("image_url"))]})
                elif kind == "input_audio":
                    out.append(
                        {
                            **base,
                            "content": "",
                            "images": [part.get("input_audio", {}).get("data", "")],
                        }
                    )
                else:
                    raise ApiError(400, f"invalid message content type: {go_type_name(part)}")
        else:
            raise ApiError(400, f"invalid message content type: {go_type_name(content)}")
    return out


def _stop(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, str):
                raise ApiError(400, f"invalid type for 'stop' field: {go_type_name(item)}")
        return list(raw)
    raise ApiError(400, f"invalid type for 'stop' field: {go_type_name(raw)}")


def _options(req: dict[str, Any], *, top_p_zero_is_default: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    stop = _stop(req.get("stop"))
    if stop is not None:
        opts["stop"] = stop
    max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
    if max_tokens is not None:
        opts["num_predict"] = max_tokens
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if req.get(key) is not None:
            opts[key] = req[key]
    opts["temperature"] = req.get("temperature", 1.0)
    top_p = req.get("top_p")
    opts["top_p"] = 1.0 if top_p is None or (top_p_zero_is_default and top_p == 0) else top_p
    return opts


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
    req = await decode_async(await ctx.body(request), OAI_CHAT)
    if not req.get("messages"):
        raise ApiError(400, "[] is too short - 'messages'")
    messages = chat_messages(req["messages"])
    options = _options(req, top_p_zero_is_default=False)
    fmt = req.get("response_format") or {}
    format_: Any = None
    if fmt.get("type") == "json_object":
        format_ = "json"
    elif fmt.get("type") == "json_schema":
        format_ = (fmt.get("json_schema") or {}).get("schema")
    effort = (req.get("reasoning") or {}).get("effort") or req.get("reasoning_effort")
    think: bool | str | None = None
    if effort is not None:
        if effort not in _EFFORT:
            raise ApiError(400, f"invalid reasoning value: {effort}")
        think = _EFFORT[effort]
    ollama = ChatRequest(
        model=req.get("model", ""),
        messages=messages,
        options=options,
        tools=req.get("tools"),
        logprobs=bool(req.get("logprobs")),
        top_logprobs=req.get("top_logprobs", 0),
        format=format_,
        think=think,
    )
    items = await prepare_chat(ctx, ollama, start)
    model = ollama.model
    if req.get("stream"):
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        chunks = _chat_chunks(items, _head("chat.completion.chunk", model), include_usage)
        return await stream_response(
            chunks, sse, "text/event-stream", openai_error, b"data: [DONE]\n\n"
        )
    final = await until_disconnect(request, collect(items, chat=True))
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
    return json_response(
        {**_head("chat.completion", model), "choices": [choice], "usage": _usage(final)}
    )


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
    req = await decode_async(await ctx.body(request), OAI_COMPLETION)
    prompt = req.get("prompt", "")
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    opts = _options(req, top_p_zero_is_default=True)
    opts.setdefault("frequency_penalty", 0.0)
    opts.setdefault("presence_penalty", 0.0)
    top = req.get("logprobs")
    ollama = GenerateRequest(
        model=req.get("model", ""),
        prompt=prompt,
        options=opts,
        suffix=req.get("suffix", ""),
        # as the reference: `logprobs: n` asks for n alternatives; 0 or absent, for none
        logprobs=top is not None and top > 0,
        top_logprobs=top if top is not None and top > 0 else 0,
    )
    items = await prepare_generate(ctx, ollama, start)
    model = ollama.model
    if req.get("stream"):
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        chunks = _completion_chunks(items, _head("text_completion", model), include_usage)
        return await stream_response(
            chunks, sse, "text/event-stream", openai_error, b"data: [DONE]\n\n"
        )
    final = await until_disconnect(request, collect(items, chat=False))
    choice = {
        "text": final.get("response", ""),
        "index": 0,
        "finish_reason": _finish(final.get("done_reason"), False),
    }
    if final.get("logprobs"):
        choice["logprobs"] = completion_logprobs(final["logprobs"])
    return json_response(
        {**_head("text_completion", model), "choices": [choice], "usage": _usage(final)}
    )


@api_handler(openai_error)
async def embeddings_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_async(await ctx.body(request), OAI_EMBED)
    raw = req.get("input")
    if raw == "":
        raw = [""]
    if raw is None or raw == []:
        raise ApiError(400, "invalid input")
    encoding = str(req.get("encoding_format") or "float")
    if encoding.lower() not in ("float", "base64"):
        supported = "Supported values: ['float', 'base64']."
        raise ApiError(400, f"Invalid value for 'encoding_format' = {encoding}. {supported}")
    result = await embed(
        ctx,
        EmbedRequest(model=req.get("model", ""), input=raw, dimensions=req.get("dimensions")),
        start,
    )
    data = []
    for i, vec in enumerate(result["embeddings"]):
        value: Any = vec
        if encoding.lower() == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
        data.append({"object": "embedding", "embedding": value, "index": i})
    tokens = result.get("prompt_eval_count", 0)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": req.get("model", ""),
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
