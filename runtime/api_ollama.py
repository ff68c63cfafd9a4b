"""/api/generate and /api/chat: validation in the reference's order, then NDJSON or one object.

`prepare_generate` and `prepare_chat` check a bound request and return an async iterator
of the reference's response objects; the OpenAI routes reuse them and translate.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from runtime.context import ServerContext, api_handler, context_of
from runtime.errors import MODEL_REQUIRED, ApiError
from runtime.generation import Final, Job, Piece, generate, hold, now_ns
from runtime.logprobs import MAX_TOP_LOGPROBS
from runtime.models import ServedModel
from runtime.options import DEFAULT_OPTIONS, Options
from runtime.prompt import chat_messages, chat_prompt, fit_chat, generate_prompt
from runtime.requests import decode_request
from runtime.sampling import grammar_for_format
from runtime.schemas import ChatRequest, GenerateRequest
from runtime.streaming import created_at, json_response, stream_response, until_disconnect
from runtime.vision import TAG, Image, MediaPrompt, image_tokens, media_prompt, tag_images

Items = AsyncIterator[dict[str, Any]]
THINK_LEVELS = ("high", "medium", "low", "max")
#: the reference's error (its ErrNoVisionModel) for images sent to a model without vision
NO_VISION = "this model is missing data required for image input"


def check_images(model: ServedModel, count: int) -> None:
    """Refuse images for a model that cannot see them, rather than dropping them."""
    if count and "vision" not in model.capabilities:
        raise ApiError(400, NO_VISION)


def media_for(
    model: ServedModel, runner: Any, text: str, images: list[Image], add_special: bool = True
) -> MediaPrompt | None:
    """The rendered prompt with its images for the engine (None: no images)."""
    if not images:
        return None
    bos = runner.llama.bos_text
    if add_special and bos and text.startswith(bos):
        add_special = False
    projector = str(model.stored.projector_paths[0]) if model.stored.projector_paths else ""
    if not projector:
        raise ApiError(400, NO_VISION)
    return media_prompt(text, images, projector, add_special)


async def tagged(
    model: ServedModel, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Image]]:
    """For a vision model, the messages with `[img-N]` tags and their checked images."""
    if "vision" not in model.capabilities or not any(m.get("images") for m in messages):
        return messages, []
    return await asyncio.to_thread(tag_images, messages)


async def format_grammar(fmt: Any) -> str | None:
    """`grammar_for_format` off the event loop; no thread hop (~0.1-1 ms each on a busy
    machine, paid by every request) when there is no format to compile."""
    if fmt is None or fmt in ("", "null"):
        return None
    return await asyncio.to_thread(grammar_for_format, fmt)


def check_think(model: ServedModel, requested: str, think: Any) -> bool | str | None:
    """The reference's thinking rules: defaults on for thinking models, refused for others."""
    if isinstance(think, str) and think not in THINK_LEVELS:
        allowed = '"high", "medium", "low", "max", true, or false'
        raise ApiError(400, f'invalid think value: "{think}" (must be {allowed})')
    capable = "thinking" in model.capabilities
    if think is None:
        return True if capable else None
    if think and not capable:
        raise ApiError(400, f'"{requested}" does not support thinking')
    return think if isinstance(think, bool | str) else None


def merged_options(model: ServedModel, request_options: Any) -> Options:
    return DEFAULT_OPTIONS.merged(model.parameters).merged(request_options)


def metrics(final: Final, start_ns: int, load_ns: int) -> dict[str, Any]:
    """The timing and count fields of a final response; zero values are left out."""
    fields = {
        "total_duration": now_ns() - start_ns,
        "load_duration": load_ns,
        "prompt_eval_count": final.prompt_eval_count,
        "prompt_eval_duration": final.prompt_eval_duration,
        "eval_count": final.eval_count,
        "eval_duration": final.eval_duration,
    }
    return {k: v for k, v in fields.items() if v}


def _done(name: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"model": name, "created_at": created_at(), **extra, "done": True, "done_reason": reason}


def check_top_logprobs(n: int) -> int:
    """The reference's bound on `top_logprobs`, checked before the model is looked up."""
    if not 0 <= n <= MAX_TOP_LOGPROBS:
        raise ApiError(400, f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return n


async def prepare_generate(ctx: ServerContext, req: GenerateRequest, start_ns: int) -> Items:
    top_logprobs = check_top_logprobs(req.top_logprobs)
    name = req.model
    if not name:
        raise ApiError(404, "model '' not found")
    model = ctx.catalog.get(name, f"model '{name}' not found")
    keep_alive = req.keep_alive
    prompt = req.prompt
    if not prompt and keep_alive == 0:
        await ctx.scheduler.expire_now(model)
        return _single(_done(name, "unload", response=""))
    raw = req.raw
    if raw and (req.template or req.system or req.context):
        raise ApiError(400, "raw mode does not support template, system, or context")
    think = check_think(model, name, req.think)
    if "completion" not in model.capabilities:
        raise ApiError(400, f'"{name}" does not support generate')
    suffix = req.suffix
    if suffix and "insert" not in model.capabilities:
        raise ApiError(400, f"{model.full_name} does not support insert")
    opts = merged_options(model, req.options)
    grammar = await format_grammar(req.format)
    context = req.context
    debug = req.debug_render_only
    if not debug:
        check_images(model, len(req.images or []))
    with_tags, images = await tagged(model, [{"content": prompt, "images": req.images}])
    req = dataclasses.replace(req, prompt=with_tags[0]["content"])
    if debug:
        text = req.prompt
        if not raw:
            text = await asyncio.to_thread(_generate_text, model, req, think, context is None)
        return _single(_debug(name, text, len(req.images or []), response=""))

    async def items() -> Items:
        async with hold(ctx.scheduler, model, opts, keep_alive) as runner:
            load_ns = now_ns() - start_ns
            if not prompt:
                yield _done(name, "load", response="")
                return
            # rendering and tokenizing a long prompt takes seconds: never on the event loop
            media = None
            if raw:
                text = req.prompt
                media = media_for(model, runner, text, images, add_special=False)
                tokens = [] if media else await asyncio.to_thread(runner.llama.tokenize, text)
            else:

                def render() -> tuple[str, list[int]]:  # one thread hop for both
                    text = _generate_text(model, req, think, context is None)
                    tokenize = runner.llama.tokenize_prompt
                    return text, [] if images else tokenize(text, add_special=not context)

                text, tokens = await asyncio.to_thread(render)
                media = media_for(model, runner, text, images, add_special=not context)
                if context and not media:
                    tokens = list(context) + tokens
            job = Job(
                tokens,
                opts,
                grammar,
                shift=req.shift is not False,
                truncate=req.truncate is not False,
                think=bool(think) and "thinking" in model.capabilities,
                logprobs=req.logprobs,
                top_logprobs=top_logprobs,
                media=media,
            )
            async for item in generate(runner, job):
                if isinstance(item, Piece):
                    chunk: dict[str, Any] = {"model": name, "created_at": created_at()}
                    chunk["response"] = item.content
                    if item.thinking:
                        chunk["thinking"] = item.thinking
                    chunk["done"] = False
                    if item.logprobs:
                        chunk["logprobs"] = [lp.to_ollama() for lp in item.logprobs]
                    yield chunk
                else:
                    final = _done(name, item.done_reason, response="")
                    if not raw:
                        final["context"] = item.context
                    final.update(metrics(item, start_ns, load_ns))
                    yield final

    return items()


def _generate_text(
    model: ServedModel, req: GenerateRequest, think: Any, with_messages: bool
) -> str:
    return generate_prompt(
        model,
        req.prompt,
        system=req.system,
        template=req.template,
        suffix=req.suffix,
        think=think,
        with_model_messages=with_messages,
    )


def _debug(name: str, text: str, images: int, **body: Any) -> dict[str, Any]:
    """`_debug_render_only`: the prompt the request renders to, without running the model."""
    info = {"rendered_template": text, "image_count": images}
    return {"model": name, "created_at": created_at(), **body, "done": False, "_debug_info": info}


async def _single(obj: dict[str, Any]) -> Items:
    yield obj


async def prepare_chat(ctx: ServerContext, req: ChatRequest, start_ns: int) -> Items:
    top_logprobs = check_top_logprobs(req.top_logprobs)
    name = req.model
    if not name:
        raise ApiError(400, MODEL_REQUIRED)
    model = ctx.catalog.get(name, f"model '{name}' not found")
    keep_alive = req.keep_alive
    messages = [_message(m) for m in req.messages or []]
    empty = {"role": "assistant", "content": ""}
    if not messages and keep_alive == 0:
        await ctx.scheduler.expire_now(model)
        return _single(_done(name, "unload", message=empty))
    if "completion" not in model.capabilities:
        raise ApiError(400, f'"{name}" does not support chat')
    tools = req.tools or None
    if tools and "tools" not in model.capabilities:
        raise ApiError(400, f"{model.full_name} does not support tools")
    think = check_think(model, name, req.think)
    opts = merged_options(model, req.options)
    grammar = await format_grammar(req.format)
    truncate = req.truncate is not False
    count = sum(len(m.get("images") or []) for m in messages)
    debug = req.debug_render_only
    if not debug:
        check_images(model, count)
    messages, pictures = await tagged(model, messages)
    if debug:
        conversation = chat_messages(model, messages)
        text = await asyncio.to_thread(chat_prompt, model, conversation, tools, think)
        return _single(_debug(name, text, count, message=empty))

    async def items() -> Items:
        async with hold(ctx.scheduler, model, opts, keep_alive) as runner:
            load_ns = now_ns() - start_ns
            if not messages:
                yield _done(name, "load", message=empty)
                return
            conversation = chat_messages(model, messages)
            per_image = 0
            if pictures and model.stored.projector_paths:
                projector = str(model.stored.projector_paths[0])
                per_image = await asyncio.to_thread(image_tokens, projector)

            def render() -> tuple[str, list[int]]:  # one thread hop for both
                text = fit_chat(
                    model,
                    conversation,
                    tools=tools,
                    think=think,
                    count=lambda s: (
                        len(runner.llama.tokenize_prompt(s)) + per_image * len(TAG.findall(s))
                    ),
                    num_ctx=runner.num_ctx,
                    truncate=truncate,
                )
                return text, [] if pictures else runner.llama.tokenize_prompt(text)

            text, tokens = await asyncio.to_thread(render)
            media = media_for(model, runner, text, pictures)
            job = Job(
                tokens,
                opts,
                grammar,
                shift=req.shift is not False,
                truncate=truncate,
                tools=tools,
                template=model.template,
                think=bool(think) and "thinking" in model.capabilities,
                logprobs=req.logprobs,
                top_logprobs=top_logprobs,
                media=media,
            )
            async for item in generate(runner, job):
                if isinstance(item, Piece):
                    message: dict[str, Any] = {"role": "assistant", "content": item.content}
                    if item.thinking:
                        message["thinking"] = item.thinking
                    if item.tool_calls:
                        message["tool_calls"] = [c.to_ollama() for c in item.tool_calls]
                    chunk: dict[str, Any] = {
                        "model": name,
                        "created_at": created_at(),
                        "message": message,
                        "done": False,
                    }
                    if item.logprobs:
                        chunk["logprobs"] = [lp.to_ollama() for lp in item.logprobs]
                    yield chunk
                else:
                    final = _done(name, item.done_reason, message=dict(empty))
                    final.update(metrics(item, start_ns, load_ns))
                    yield final

    return items()


def _message(m: dict[str, Any]) -> dict[str, Any]:
    """A request message as the template sees it (roles lower-cased, as the reference)."""
    out = dict(m)
    out["role"] = str(m.get("role", "")).lower()
    out.setdefault("content", "")
    return out


async def collect(items: Items, chat: bool) -> dict[str, Any]:
    """The single `stream: false` object: texts joined, tool calls gathered, last fields kept."""
    content: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    async for item in items:
        last = item
        logprobs.extend(item.get("logprobs", []))
        body = item.get("message", {}) if chat else item
        content.append(body.get("content" if chat else "response", ""))
        thinking.append(body.get("thinking", ""))
        calls.extend(body.get("tool_calls", []))
    if not last:
        return last
    out = dict(last)
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if calls:
            message["tool_calls"] = calls
        out["message"] = message
    else:
        out["response"] = "".join(content)
        if any(thinking):
            out["thinking"] = "".join(thinking)
    if logprobs:
        out["logprobs"] = logprobs
    return out


async def _respond(request: Request, items: Items, stream: bool, chat: bool) -> Response:
    if stream:
        return await stream_response(items)
    return json_response(await until_disconnect(request, collect(items, chat)))


@api_handler()
async def generate_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), GenerateRequest)
    items = await prepare_generate(ctx, req, start)
    return await _respond(request, items, req.stream is not False, chat=False)


@api_handler()
async def chat_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), ChatRequest)
    items = await prepare_chat(ctx, req, start)
    return await _respond(request, items, req.stream is not False, chat=True)
