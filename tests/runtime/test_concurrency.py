"""Scheduler behaviour through HTTP: parallel slots, the queue limit, disconnects, keep_alive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import ollama
import pytest

QUESTIONS = [
    "What is the capital of France?",
    "Name three colors.",
    "Count to five.",
    "What is 2+2?",
    "Say hello in Spanish.",
    "Who wrote Hamlet?",
    "What is water made of?",
    "Name a fruit.",
]
OPTIONS = {"seed": 11, "temperature": 0.7, "num_predict": 200}
#: answers of a known length (twelve numbers), so the eight requests overlap for a while
TWELVE = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0, "maximum": 99},
    "minItems": 12,
    "maxItems": 12,
}
BUSY = '{"error":"server busy, please try again.  maximum pending requests exceeded"}'
#: one pooled client for every request (thread-safe), as applications use theirs
CLIENT = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=32))


@pytest.fixture(scope="module")
def url(start_server: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    # no inter-token latency budget: these tests are about the slots (a budget admits
    # fewer streams on a CPU; tests/runtime/test_admission.py)
    env = {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_MAX_QUEUE": "8", "OLLAMA_MAX_LOADED_MODELS": "1",
           "MFC_ITL_BUDGET": "0"}  # fmt: skip
    with start_server(env) as base:
        yield base


def stream_chat(
    url: str, question: str, first_token: threading.Event | None = None
) -> dict[str, object]:
    """One streamed /api/chat: the joined text and the final object."""
    body = {
        "model": "demo",
        "messages": [{"role": "user", "content": question + " Answer with twelve numbers."}],
        "options": OPTIONS,
        "format": TWELVE,
    }
    parts: list[str] = []
    final: dict[str, object] = {}
    with CLIENT.stream("POST", url + "/api/chat", json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            item = json.loads(line)
            assert "error" not in item, item
            parts.append(item["message"]["content"])
            if first_token is not None:
                first_token.set()
            if item["done"]:
                final = item
    return {"text": "".join(parts), **final}


def test_eight_streams_on_two_slots_and_a_full_queue(url: str) -> None:
    alone = [stream_chat(url, q)["text"] for q in QUESTIONS]
    results: dict[int, dict[str, object]] = {}
    errors: list[BaseException] = []
    started = [threading.Event() for _ in QUESTIONS]

    def worker(i: int) -> None:
        try:
            results[i] = stream_chat(url, QUESTIONS[i], started[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    # Two slots: two streams get tokens while six wait. A load-only request is admitted
    # and answered at once while there is room, so probing does not disturb the eight;
    # once all eight are in, the next request is refused.
    while sum(e.is_set() for e in started) < 2 and not errors:
        time.sleep(0.01)
    probes = []
    while not results and not errors:
        probe = CLIENT.post(url + "/api/chat", json={"model": "demo", "messages": []})
        probes.append((probe.status_code, probe.text))
        if probe.status_code == 503:
            break
    for t in threads:
        t.join()
    assert not errors
    assert probes[-1] == (503, BUSY), probes
    # every request finished, each with the answer it gets when run alone
    assert [results[i]["text"] for i in range(len(QUESTIONS))] == alone
    assert all(results[i]["done"] for i in results)
    assert all(len(json.loads(str(results[i]["text"]))) == 12 for i in results)
    # and the queue is empty again
    assert stream_chat(url, QUESTIONS[0])["text"] == alone[0]


def test_disconnect_stops_generation(url: str) -> None:
    body = {
        "model": "demo",
        "prompt": "Write a very long story about the sea.",
        "options": {"num_predict": 100000, "temperature": 1.0},
    }
    for _ in range(2):  # fill both slots with endless generations, then hang up
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=600) as response:
            lines = response.iter_lines()
            next(lines)
            next(lines)
    # had the abandoned generations kept their slots, this would wait forever
    answer = stream_chat(url, QUESTIONS[3])
    assert answer["done"]


def test_keep_alive_and_max_loaded_models(url: str, tiny_llama_model: str) -> None:
    client = ollama.Client(host=url)
    client.generate("demo", "Hi", options={"num_predict": 1}, keep_alive=-1)
    (loaded,) = client.ps().models
    assert loaded.model == "demo:latest"
    assert loaded.expires_at is not None and loaded.expires_at.year > 2200  # forever
    client.generate("demo", "Hi", options={"num_predict": 1}, keep_alive="1h")
    (loaded,) = client.ps().models
    assert loaded.expires_at is not None and loaded.expires_at.year < 2200
    # OLLAMA_MAX_LOADED_MODELS=1: loading another model unloads the idle one
    client.generate(tiny_llama_model, "Hi", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == ["tinyllama:latest"]
    # keep_alive 0 unloads as soon as the request is done
    client.generate(tiny_llama_model, "Hi", options={"num_predict": 1}, keep_alive=0)
    for _ in range(100):
        if not client.ps().models:
            break
        time.sleep(0.05)
    assert client.ps().models == []
    # an empty prompt loads the model and says so
    loaded_only = client.generate("demo", "")
    assert (loaded_only.done, loaded_only.done_reason) == (True, "load")
    assert [m.model for m in client.ps().models] == ["demo:latest"]
