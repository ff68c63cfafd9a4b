"""OpenAI requests as the Ollama requests the reference maps them onto.

`chat_request` and `generate_request` check a bound /v1/chat/completions or /v1/completions
request in the reference's order (its openai middleware) and translate it: messages with
content parts become Ollama messages, sampling fields become options, `response_format`
becomes `format` and the reasoning effort becomes `think`.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import ApiError
from runtime.jsonbody import go_type_name
from runtime.schemas import ChatCompletionRequest, ChatRequest, CompletionRequest, GenerateRequest
from toolchain.gojson import loads

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


def _options(
    req: ChatCompletionRequest | CompletionRequest,
    max_tokens: int | None,
    *,
    top_p_zero_is_default: bool,
) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    stop = _stop(req.stop)
    if stop is not None:
        opts["stop"] = stop
    if max_tokens is not None:
        opts["num_predict"] = max_tokens
    for key, value in (
        ("seed", req.seed),
        ("frequency_penalty", req.frequency_penalty),
        ("presence_penalty", req.presence_penalty),
    ):
        if value is not None:
            opts[key] = value
    opts["temperature"] = 1.0 if req.temperature is None else req.temperature
    top_p = req.top_p
    opts["top_p"] = 1.0 if top_p is None or (top_p_zero_is_default and top_p == 0) else top_p
    return opts


def chat_request(req: ChatCompletionRequest) -> ChatRequest:
    """The /api/chat request a chat completion runs as."""
    if not req.messages:
        raise ApiError(400, "[] is too short - 'messages'")
    messages = chat_messages(req.messages)
    max_tokens = req.max_completion_tokens or req.max_tokens
    options = _options(req, max_tokens, top_p_zero_is_default=False)
    fmt = req.response_format or {}
    format_: Any = None
    if fmt.get("type") == "json_object":
        format_ = "json"
    elif fmt.get("type") == "json_schema":
        format_ = (fmt.get("json_schema") or {}).get("schema")
    effort = (req.reasoning or {}).get("effort") or req.reasoning_effort
    think: bool | str | None = None
    if effort is not None:
        if effort not in _EFFORT:
            raise ApiError(400, f"invalid reasoning value: {effort}")
        think = _EFFORT[effort]
    return ChatRequest(
        model=req.model,
        messages=messages,
        options=options,
        tools=req.tools,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs,
        format=format_,
        think=think,
    )


def generate_request(req: CompletionRequest) -> GenerateRequest:
    """The /api/generate request a completion runs as."""
    prompt = "" if req.prompt is None else req.prompt
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    opts = _options(req, req.max_tokens, top_p_zero_is_default=True)
    opts.setdefault("frequency_penalty", 0.0)
    opts.setdefault("presence_penalty", 0.0)
    top = req.logprobs
    return GenerateRequest(
        model=req.model,
        prompt=prompt,
        options=opts,
        suffix=req.suffix,
        # as the reference: `logprobs: n` asks for n alternatives; 0 or absent, for none
        logprobs=top is not None and top > 0,
        top_logprobs=top if top is not None and top > 0 else 0,
    )
