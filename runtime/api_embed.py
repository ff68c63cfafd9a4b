"""/api/embed and the legacy /api/embeddings."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from runtime.api_ollama import merged_options
from runtime.context import ServerContext, api_handler, context_of
from runtime.embedding import check_finite, finish_vectors
from runtime.errors import MODEL_REQUIRED, ApiError
from runtime.generation import hold, now_ns
from runtime.jsonfloat import RawJSON, go_json_floats
from runtime.metrics import current_request
from runtime.requests import decode_request
from runtime.schemas import EmbeddingRequest, EmbedRequest
from runtime.streaming import json_response

#: above this many vectors, normalising them is worth a hop off the event loop
MANY_VECTORS = 32
#: arrays above this many numbers are written to JSON off the event loop
MANY_FLOATS = 16384


async def encode_floats(values: np.ndarray) -> bytes:
    """`values` as the reference's JSON (Go's float formatting), off the loop when large."""
    if values.size > MANY_FLOATS:
        return await asyncio.to_thread(go_json_floats, values)
    return go_json_floats(values)


def embed_inputs(raw: Any) -> list[str]:
    """`input` as a list of texts: a string or an array of strings ("" and null: none)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return list(raw)
    raise ApiError(400, "invalid input type")


async def embed(ctx: ServerContext, req: EmbedRequest, start_ns: int) -> dict[str, Any]:
    """The /api/embed response for a bound request (the OpenAI route reuses it)."""
    name = req.model
    if not name:
        raise ApiError(404, "model '' not found")
    model = ctx.catalog.get(name, f'model "{name}" not found, try pulling it first')
    texts = embed_inputs(req.input)
    truncate = req.truncate is not False
    dimensions = req.dimensions
    opts = merged_options(model, req.options)
    async with hold(ctx.scheduler, model, opts, req.keep_alive) as runner:
        load_ns = now_ns() - start_ns
        if not texts:
            return {"model": name, "embeddings": np.zeros((0, 0), np.float32)}
        result = await runner.embed(texts, truncate)
    current_request().embedded(len(texts), result.prompt_tokens)
    if len(result.vectors) > MANY_VECTORS:
        vectors = await asyncio.to_thread(finish_vectors, result.vectors, dimensions)
    else:
        vectors = finish_vectors(result.vectors, dimensions)
    out: dict[str, Any] = {"model": name, "embeddings": vectors}  # (n, d) float32
    extra = {
        "total_duration": now_ns() - start_ns,
        "load_duration": load_ns,
        "prompt_eval_count": result.prompt_tokens,
    }
    out.update({k: v for k, v in extra.items() if v})
    return out


@api_handler()
async def embed_handler(request: Request) -> Response:
    start = now_ns()
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), EmbedRequest)
    out = await embed(ctx, req, start)
    out["embeddings"] = RawJSON(await encode_floats(out["embeddings"]))
    return json_response(out)


@api_handler()
async def embeddings_handler(request: Request) -> Response:
    """The legacy route: one prompt, the raw (unnormalised) vector."""
    ctx = context_of(request)
    req = await decode_request(await ctx.body(request), EmbeddingRequest)
    name = req.model
    if not name:
        raise ApiError(400, MODEL_REQUIRED)
    model = ctx.catalog.get(name, f'model "{name}" not found, try pulling it first')
    opts = merged_options(model, req.options)
    prompt = req.prompt
    async with hold(ctx.scheduler, model, opts, req.keep_alive) as runner:
        if not prompt:
            return json_response({"embedding": []})
        try:
            result = await runner.embed([prompt], True)
        except ApiError as exc:
            raise ApiError(500, exc.message) from None
    current_request().embedded(1, result.prompt_tokens)
    vector = check_finite(result.vectors[0])
    return json_response({"embedding": RawJSON(await encode_floats(vector))})
