"""Request shapes of the reference's API structs (api.GenerateRequest, ...), as data.

`runtime.jsonbody.decode(body, GENERATE)` binds a body to one of these and fails with Go's
messages; handlers then read plain dicts. Custom JSON types (`keep_alive`, `think`) carry
their own decoders with the reference's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.durations import keep_alive_seconds
from runtime.errors import ApiError
from runtime.jsonbody import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    STRING,
    GoType,
    custom,
    map_of,
    slice_of,
    struct,
)
from runtime.requests import go, shape_of


def _think(value: Any) -> Any:
    if isinstance(value, bool | str):
        return value
    raise ApiError(400, "think must be a boolean or string")


KEEP_ALIVE = custom("*api.Duration", keep_alive_seconds)
THINK = custom("*api.ThinkValue", _think)
IMAGE = GoType("api.ImageData", "string")
OPTIONS = map_of(ANY)

TOOL_CALL = struct(
    "api.ToolCall",
    {
        "id": STRING,
        "function": struct(
            "api.ToolCallFunction",
            {
                "index": INT,
                "name": STRING,
                "arguments": GoType("api.ToolCallFunctionArguments", "map", elem=ANY),
            },
        ),
    },
)

MESSAGE = struct(
    "api.Message",
    {
        "role": STRING,
        "content": STRING,
        "thinking": STRING,
        "images": slice_of(IMAGE, "[]api.ImageData"),
        "tool_calls": slice_of(TOOL_CALL, "[]api.ToolCall"),
        "tool_name": STRING,
        "tool_call_id": STRING,
    },
)

TOOL = struct(
    "api.Tool",
    {
        "type": STRING,
        "items": ANY,
        "function": struct(
            "api.ToolFunction",
            {"name": STRING, "description": STRING, "parameters": ANY},
        ),
    },
)


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    model: str = go(STRING, "")
    prompt: str = go(STRING, "")
    suffix: str = go(STRING, "")
    system: str = go(STRING, "")
    template: str = go(STRING, "")
    context: list[int] | None = go(slice_of(INT))
    stream: bool | None = go(BOOL)
    raw: bool = go(BOOL, False)
    format: Any = go(ANY)
    keep_alive: float | None = go(KEEP_ALIVE)
    images: list[str] | None = go(slice_of(IMAGE, "[]api.ImageData"))
    options: dict[str, Any] | None = go(OPTIONS)
    think: bool | str | None = go(THINK)
    truncate: bool | None = go(BOOL)
    shift: bool | None = go(BOOL)
    logprobs: bool = go(BOOL, False)
    top_logprobs: int = go(INT, 0)
    debug_render_only: bool = go(BOOL, False, json="_debug_render_only")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str = go(STRING, "")
    messages: list[dict[str, Any]] | None = go(slice_of(MESSAGE, "[]api.Message"))
    stream: bool | None = go(BOOL)
    format: Any = go(ANY)
    keep_alive: float | None = go(KEEP_ALIVE)
    tools: list[dict[str, Any]] | None = go(slice_of(TOOL, "api.Tools"))
    options: dict[str, Any] | None = go(OPTIONS)
    think: bool | str | None = go(THINK)
    truncate: bool | None = go(BOOL)
    shift: bool | None = go(BOOL)
    logprobs: bool = go(BOOL, False)
    top_logprobs: int = go(INT, 0)
    debug_render_only: bool = go(BOOL, False, json="_debug_render_only")


GENERATE = shape_of(GenerateRequest)
CHAT = shape_of(ChatRequest)


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str = go(STRING, "")
    input: Any = go(ANY)
    keep_alive: float | None = go(KEEP_ALIVE)
    truncate: bool | None = go(BOOL)
    dimensions: int | None = go(INT)
    options: dict[str, Any] | None = go(OPTIONS)


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str = go(STRING, "")
    prompt: str = go(STRING, "")
    keep_alive: float | None = go(KEEP_ALIVE)
    options: dict[str, Any] | None = go(OPTIONS)


EMBED = shape_of(EmbedRequest)
EMBEDDINGS = shape_of(EmbeddingRequest)


@dataclass(frozen=True, slots=True)
class ShowRequest:
    model: str = go(STRING, "")
    system: str = go(STRING, "")
    template: str = go(STRING, "")
    verbose: bool = go(BOOL, False)
    options: dict[str, Any] | None = go(OPTIONS)
    name: str = go(STRING, "")


@dataclass(frozen=True, slots=True)
class CopyRequest:
    source: str = go(STRING, "")
    destination: str = go(STRING, "")


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    model: str = go(STRING, "")
    name: str = go(STRING, "")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    model: str = go(STRING, "")
    name: str = go(STRING, "")
    from_: str = go(STRING, "", json="from")
    files: dict[str, str] | None = go(map_of(STRING))
    adapters: dict[str, str] | None = go(map_of(STRING))
    template: str = go(STRING, "")
    license: Any = go(ANY)
    system: str = go(STRING, "")
    parameters: dict[str, Any] | None = go(OPTIONS)
    messages: list[dict[str, Any]] | None = go(slice_of(MESSAGE, "[]api.Message"))
    stream: bool | None = go(BOOL)
    quantize: str = go(STRING, "")
    quantization: str = go(STRING, "")
    renderer: str = go(STRING, "")
    parser: str = go(STRING, "")
    requires: str = go(STRING, "")
    draft_files: dict[str, str] | None = go(map_of(STRING))
    draft_quantize: str = go(STRING, "")
    remote_host: str = go(STRING, "")
    info: dict[str, Any] | None = go(OPTIONS)


SHOW = shape_of(ShowRequest)
COPY = shape_of(CopyRequest)
DELETE = shape_of(DeleteRequest)
CREATE = shape_of(CreateRequest)


# --- OpenAI-compatible requests (openai/openai.go) --------------------------------------

OAI_TOOL_CALL = struct(
    "openai.ToolCall",
    {
        "id": STRING,
        "index": INT,
        "type": STRING,
        "function": struct("openai.Function", {"name": STRING, "arguments": STRING}),
    },
)

OAI_MESSAGE = struct(
    "openai.Message",
    {
        "role": STRING,
        "content": ANY,
        "name": STRING,
        "reasoning": STRING,
        "tool_calls": slice_of(OAI_TOOL_CALL, "[]openai.ToolCall"),
        "tool_call_id": STRING,
    },
)

STREAM_OPTIONS = struct("openai.StreamOptions", {"include_usage": BOOL})


@dataclass(frozen=True, slots=True)
class ChatCompletionRequest:
    model: str = go(STRING, "")
    messages: list[dict[str, Any]] | None = go(slice_of(OAI_MESSAGE, "[]openai.Message"))
    stream: bool = go(BOOL, False)
    stream_options: dict[str, Any] | None = go(STREAM_OPTIONS)
    max_tokens: int | None = go(INT)
    max_completion_tokens: int | None = go(INT)
    seed: int | None = go(INT)
    stop: Any = go(ANY)
    temperature: float | None = go(FLOAT)
    frequency_penalty: float | None = go(FLOAT)
    presence_penalty: float | None = go(FLOAT)
    top_p: float | None = go(FLOAT)
    response_format: dict[str, Any] | None = go(
        struct(
            "openai.ResponseFormat",
            {"type": STRING, "json_schema": struct("openai.JsonSchema", {"schema": ANY})},
        )
    )
    tools: list[dict[str, Any]] | None = go(slice_of(TOOL, "[]api.Tool"))
    reasoning: dict[str, Any] | None = go(struct("openai.Reasoning", {"effort": STRING}))
    reasoning_effort: str | None = go(STRING)
    logprobs: bool | None = go(BOOL)
    top_logprobs: int = go(INT, 0)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str = go(STRING, "")
    prompt: Any = go(ANY)
    frequency_penalty: float | None = go(FLOAT)
    max_tokens: int | None = go(INT)
    presence_penalty: float | None = go(FLOAT)
    seed: int | None = go(INT)
    stop: Any = go(ANY)
    stream: bool = go(BOOL, False)
    stream_options: dict[str, Any] | None = go(STREAM_OPTIONS)
    temperature: float | None = go(FLOAT)
    top_p: float | None = go(FLOAT)
    suffix: str = go(STRING, "")
    logprobs: int | None = go(INT)


@dataclass(frozen=True, slots=True)
class OpenAIEmbedRequest:
    model: str = go(STRING, "")
    input: Any = go(ANY)
    encoding_format: str | None = go(STRING)
    dimensions: int | None = go(INT)


OAI_CHAT = shape_of(ChatCompletionRequest)
OAI_COMPLETION = shape_of(CompletionRequest)
OAI_EMBED = shape_of(OpenAIEmbedRequest, "EmbedRequest")
