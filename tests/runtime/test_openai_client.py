"""The official `openai` Python package against a live `mfc serve` (the /v1 routes)."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def test_chat_completions(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="demo",
        messages=QUESTION,
        max_tokens=20,
        seed=3,
        temperature=0,  # type: ignore[arg-type]
    )
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert whole.system_fingerprint == "fp_ollama"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage is not None
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model="demo",
            messages=QUESTION,  # type: ignore[arg-type]
            max_tokens=20,
            seed=3,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == choice.finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_completions_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    answer = client.chat.completions.create(
        model="demo",
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=60,
        seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    data = json.loads(answer.choices[0].message.content or "")
    assert set(data) == {"city", "country"}


def test_completions(client: openai.OpenAI) -> None:
    whole = client.completions.create(
        model="demo", prompt="The capital of France is", max_tokens=12, seed=5, temperature=0
    )
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert whole.choices[0].text and whole.choices[0].finish_reason in ("stop", "length")
    streamed = list(
        client.completions.create(
            model="demo",
            prompt="The capital of France is",
            max_tokens=12,
            seed=5,
            temperature=0,
            stream=True,
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text
    cut = client.completions.create(
        model="demo", prompt="Count: 1, 2, 3,", max_tokens=30, temperature=0, stop=[","]
    )
    assert "," not in cut.choices[0].text


def test_embeddings(client: openai.OpenAI) -> None:
    got = client.embeddings.create(model="demo", input=["a cat", "a dog", "a stock market"])
    assert [d.index for d in got.data] == [0, 1, 2]
    vecs = np.array([d.embedding for d in got.data])
    assert vecs.shape == (3, 576) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert got.usage.prompt_tokens == got.usage.total_tokens > 0
    # the client asks for base64 by default and decodes it: same numbers as floats
    floats = client.embeddings.create(model="demo", input="a cat", encoding_format="float")
    assert np.allclose(floats.data[0].embedding, vecs[0], atol=1e-6)
    short = client.embeddings.create(model="demo", input="a cat", dimensions=32)
    assert len(short.data[0].embedding) == 32


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "demo:latest" in ids
    model = client.models.retrieve("demo")
    assert (model.id, model.object, model.owned_by) == ("demo", "model", "library")
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.status_code == 404


def test_errors_have_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="missing", messages=QUESTION)  # type: ignore[arg-type]
    body = err.value.body
    assert isinstance(body, dict)
    assert body == {
        "message": "model 'missing' not found",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="demo", messages=[])
    assert bad.value.message.endswith("[] is too short - 'messages'")
    with pytest.raises(openai.BadRequestError) as fmt:
        client.embeddings.create(model="demo", input="x", encoding_format="hex")  # type: ignore[arg-type]
    assert "Supported values: ['float', 'base64']" in fmt.value.message


def test_tool_calls(client: openai.OpenAI, server: str) -> None:
    import httpx

    from tests.runtime.conftest import CHATML_TOOLS
    from tests.runtime.test_ollama_client import CALL_SCHEMA, WEATHER

    created = httpx.post(
        server + "/api/create",
        json={"model": "oai-tools", "from": "demo", "template": CHATML_TOOLS, "stream": False},
        timeout=120,
    )
    assert created.json() == {"status": "success"}
    ask = [{"role": "user", "content": "What is the weather in Tokyo?"}]
    fmt = {"type": "json_schema", "json_schema": {"name": "call", "schema": CALL_SCHEMA}}
    answer = client.chat.completions.create(
        model="oai-tools",
        messages=ask,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        response_format=fmt,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    chunks = list(
        client.chat.completions.create(
            model="oai-tools",
            messages=ask,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            response_format=fmt,  # type: ignore[arg-type]
            max_tokens=40,
            temperature=0,
            stream=True,
        )
    )
    calls = [c for ch in chunks if ch.choices for c in (ch.choices[0].delta.tool_calls or [])]
    assert [(c.function.name, json.loads(c.function.arguments or "")) for c in calls] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # the tool's answer goes back as a `tool` message
    follow = client.chat.completions.create(
        model="oai-tools",
        messages=[  # type: ignore[list-item]
            *ask,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"},
        ],
        max_tokens=20,
    )
    assert follow.choices[0].message.content
    httpx.request("DELETE", server + "/api/delete", json={"model": "oai-tools"}, timeout=60)
