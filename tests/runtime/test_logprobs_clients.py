"""The official `ollama` and `openai` Python packages read mfc's logprobs into their own
types, over a live `mfc serve` (the numbers themselves: test_logprobs.py)."""

from __future__ import annotations

import math

import ollama
import openai
import pytest

QUESTION = "What is the capital of France?"
FAST = {"temperature": 0, "num_predict": 8}


@pytest.fixture(scope="module")
def ollama_client(server: str) -> ollama.Client:
    return ollama.Client(host=server)


@pytest.fixture(scope="module")
def openai_client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


def probable(logprob: float) -> bool:
    return logprob <= 0 and math.isfinite(logprob)


def test_ollama_client_generate_and_chat(ollama_client: ollama.Client) -> None:
    out = ollama_client.generate("demo", QUESTION, options=FAST, logprobs=True, top_logprobs=2)
    assert out.logprobs and "".join(lp.token for lp in out.logprobs) == out.response
    assert all(probable(lp.logprob) and len(lp.top_logprobs or []) == 2 for lp in out.logprobs)
    parts = list(
        ollama_client.chat(
            "demo",
            [{"role": "user", "content": QUESTION}],
            options=FAST,
            logprobs=True,
            stream=True,
        )
    )
    tokens = [lp for p in parts for lp in (p.logprobs or [])]
    assert "".join(lp.token for lp in tokens) == "".join(p.message.content or "" for p in parts)
    assert all(probable(lp.logprob) and not lp.top_logprobs for lp in tokens)


def test_openai_client_chat_and_completions(openai_client: openai.OpenAI) -> None:
    chat = openai_client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    content = chat.choices[0].logprobs and chat.choices[0].logprobs.content
    assert content and "".join(c.token for c in content) == chat.choices[0].message.content
    assert all(probable(c.logprob) and len(c.top_logprobs) == 2 for c in content)
    done = openai_client.completions.create(
        model="demo", prompt=QUESTION, max_tokens=8, temperature=0, logprobs=2
    )
    legacy = done.choices[0].logprobs
    assert legacy is not None and legacy.tokens and legacy.token_logprobs
    assert "".join(legacy.tokens) == done.choices[0].text
    assert legacy.top_logprobs and all(len(t) <= 2 for t in legacy.top_logprobs)
    assert legacy.text_offset and legacy.text_offset[0] == 0
