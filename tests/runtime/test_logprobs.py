"""logprobs on /api/generate, /api/chat, /v1/chat/completions and /v1/completions, streamed
and not: each chosen token's logprob is llama.cpp's log-softmax of that step's logits (from
llama-cpp-python in this process, same GGUF and prompt) within 1e-4, and so are the
`top_logprobs` alternatives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.config import ServerConfig
from runtime.logprobs import PendingLogprobs, TokenLogprob, log_sum_exp
from tests.runtime.conftest import CHATML, build_into
from tests.runtime.llama_reference import Reference, Step, log_softmax

QUESTION = "Write a haiku about the sea."
PROMPT = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
N = 12
TOP = 3
TOLERANCE = 1e-4
ROUTES = ("generate", "chat", "v1/chat/completions", "v1/completions")

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def client(
    model_store: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    modelfile = f'FROM {smollm2_gguf}\nTEMPLATE """{CHATML}"""\n'
    build_into(model_store, "plain", modelfile, tmp_path_factory.mktemp("plain"))
    app = create_app(ServerConfig(models_root=model_store, flash_attention=True))  # as Reference
    with TestClient(app, base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def reference(smollm2_gguf: Path) -> Reference:
    return Reference(smollm2_gguf)


@pytest.fixture(scope="module")
def steps(reference: Reference) -> list[Step]:
    return reference.greedy(reference.tokenize(PROMPT), N)


def body(route: str, stream: bool, **extra: Any) -> dict[str, Any]:
    """A greedy request for N tokens with logprobs and TOP alternatives, in the route's terms."""
    if route.startswith("v1/"):
        req: dict[str, Any] = {"temperature": 0, "max_tokens": N, "stream": stream}
        if route == "v1/completions":
            req |= {"prompt": QUESTION, "logprobs": TOP}
        else:
            req |= {"messages": [{"role": "user", "content": QUESTION}]}
            req |= {"logprobs": True, "top_logprobs": TOP}
    else:
        req = {"options": {"temperature": 0, "num_predict": N}, "stream": stream}
        req |= {"logprobs": True, "top_logprobs": TOP}
        if route == "generate":
            req["prompt"] = QUESTION
        else:
            req["messages"] = [{"role": "user", "content": QUESTION}]
    return {"model": "plain", **req, **extra}


def items(client: TestClient, route: str, req: dict[str, Any]) -> list[dict[str, Any]]:
    """The response objects: one, or every streamed chunk (NDJSON or SSE)."""
    with client.stream("POST", f"/{route}" if route.startswith("v1/") else f"/api/{route}",
                       json=req) as r:  # fmt: skip
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line]
    if not req.get("stream", True) and not route.startswith("v1/"):
        return [json.loads("".join(lines))]
    if route.startswith("v1/"):
        if not req["stream"]:
            return [json.loads("".join(lines))]
        return [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    return [json.loads(line) for line in lines]


def entries_and_text(route: str, objs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The per-token entries (the reference's shape) and the answer text across `objs`."""
    entries: list[dict[str, Any]] = []
    text = ""
    for obj in objs:
        if route.startswith("v1/"):
            for choice in obj["choices"]:
                entries += (choice.get("logprobs") or {}).get("content", [])
                part = choice.get("text") if route == "v1/completions" else None
                if part is None:
                    part = (choice.get("message") or choice.get("delta") or {}).get("content")
                text += part or ""
        else:
            entries += obj.get("logprobs", [])
            text += obj["response"] if route == "generate" else obj["message"]["content"]
    return entries, text


def assert_matches(
    entries: list[dict[str, Any]], steps: list[Step], reference: Reference, top: int
) -> None:
    assert len(entries) == len(steps)
    for entry, step in zip(entries, steps, strict=True):
        want = log_softmax(step.logits)
        raw = reference.piece(step.token)
        assert entry["token"] == raw.decode("utf-8", errors="replace")
        assert entry["bytes"] == list(raw)
        assert abs(entry["logprob"] - want[step.token]) < TOLERANCE
        alternatives = entry.get("top_logprobs", [])
        assert len(alternatives) == top
        best = np.sort(want)[::-1][:top]
        assert np.allclose([a["logprob"] for a in alternatives], best, atol=TOLERANCE)
        if top:
            assert alternatives[0]["token"] == entry["token"]  # greedy took the best


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("route", ROUTES)
def test_logprobs_are_llama_cpp_log_softmax(
    client: TestClient, reference: Reference, steps: list[Step], route: str, stream: bool
) -> None:
    objs = items(client, route, body(route, stream))
    entries, text = entries_and_text(route, objs)
    assert text == reference.text([s.token for s in steps])
    assert_matches(entries, steps, reference, TOP)
    if route == "v1/completions":
        legacy = [o["choices"][0].get("logprobs") for o in objs if o["choices"]]
        legacy = [lp for lp in legacy if lp]
        tokens = [t for lp in legacy for t in lp["tokens"]]
        assert tokens == [e["token"] for e in entries] and "".join(tokens) == text
        offsets = [o for lp in legacy for o in lp["text_offset"]]
        assert offsets == [len("".join(tokens[:i])) for i in range(len(tokens))]
        logprobs = [v for lp in legacy for v in lp["token_logprobs"]]
        assert logprobs == [e["logprob"] for e in entries]
        tops = [t for lp in legacy for t in lp["top_logprobs"]]
        assert [max(t.values()) for t in tops] == logprobs


@pytest.mark.parametrize("route", ["generate", "chat"])
def test_top_logprobs_zero_gives_the_chosen_token_only(
    client: TestClient, reference: Reference, steps: list[Step], route: str
) -> None:
    req = body(route, False)
    req["top_logprobs"] = 0
    entries, _ = entries_and_text(route, items(client, route, req))
    assert_matches(entries, steps, reference, 0)


@pytest.mark.parametrize("route", ROUTES)
def test_no_logprobs_unless_asked(client: TestClient, route: str) -> None:
    req = body(route, False)
    if route == "v1/completions":
        req["logprobs"] = 0  # as the reference: 0 alternatives asks for nothing
    else:
        req.pop("logprobs")
    (obj,) = items(client, route, req)
    assert "logprobs" not in obj and all("logprobs" not in c for c in obj.get("choices", []))


def test_stop_string_tokens_have_no_logprobs(
    client: TestClient, reference: Reference, steps: list[Step]
) -> None:
    """Tokens cut away with a stop string lose their entries; one the stop starts inside
    keeps its entry, as in the reference."""
    whole = reference.text([s.token for s in steps])
    cut = whole.index(whole.split()[2])
    req = body("chat", False)
    req["options"]["stop"] = [whole[cut : cut + 3]]
    entries, text = entries_and_text("chat", items(client, "chat", req))
    assert text == whole[:cut]
    starts = np.cumsum([0] + [len(reference.piece(s.token).decode()) for s in steps])
    kept = [s for s, start in zip(steps, starts, strict=False) if start < cut]
    assert_matches(entries, kept, reference, TOP)


def test_openai_top_logprobs_bound(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", json=body("v1/chat/completions", False, top_logprobs=21)
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "top_logprobs must be between 0 and 20"


def entry(name: str) -> TokenLogprob:
    return TokenLogprob(name, -1.0, name.encode())


def test_pending_entries_follow_their_text() -> None:
    """Entries leave with the first released character of their token; a token of a
    partial character (no text of its own) leaves once everything before it has."""
    pending = PendingLogprobs()
    pending.add(0, 3, entry("abc"))
    pending.add(3, 3, entry("partial"))  # first byte of a two-byte character
    pending.add(3, 4, entry("rest"))
    assert [e.token for e in pending.release(2)] == ["abc"]  # "ab" released, "c" held
    assert pending.release(0) == ()
    assert [e.token for e in pending.release(1)] == ["partial"]  # "c": all before it out
    assert [e.token for e in pending.release(1)] == ["rest"]
    pending.add(4, 6, entry("st"))
    pending.add(6, 8, entry("op"))
    assert pending.release(0) == ()  # a stop string cuts at 4: "st", "op" only made it up
    pending.drop()
    assert pending.rest() == ()


def test_log_sum_exp_is_stable() -> None:
    logits = np.array([1000.0, 999.0, -1000.0], dtype=np.float32)
    want = 1000.0 + np.log(1 + np.exp(-1.0) + np.exp(-2000.0))
    assert abs(log_sum_exp(logits) - want) < 1e-6  # exp in float32, summed in float64
