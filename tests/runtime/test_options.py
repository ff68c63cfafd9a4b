"""Every option of the options table (`ApiOptions`), through /api/generate and /api/chat.

Each sampling option must change the answer exactly as llama.cpp does: the server's
greedy or seeded output is compared with `Reference` (llama-cpp-python in this process,
same GGUF, same prompt tokens), and each row first checks that the option does change
the reference's answer, so a server that dropped it would fail. Runner options are seen
on the loaded runner; the rest are accepted as the reference accepts them. The server
runs in-process so the runner it loads can be inspected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.config import ServerConfig
from runtime.scheduler import Runner
from tests.runtime.conftest import CHATML, build_into
from tests.runtime.llama_reference import Reference
from toolchain.frontend.parameters import ApiOptions

QUESTION = "List the numbers one to twenty."
PROMPT = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
N = 16
ROUTES = ("generate", "chat")
SEED = 11
DEFAULTS = ApiOptions()

pytestmark = [pytest.mark.oracle, pytest.mark.slow]


@pytest.fixture(scope="module")
def store(model_store: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`plain` (SmolLM2, ChatML, no parameters) and `penalized` (PARAMETER repeat_penalty)."""
    base = f'FROM {smollm2_gguf}\nTEMPLATE """{CHATML}"""\n'
    build_into(model_store, "plain", base, tmp_path_factory.mktemp("plain"))
    build_into(model_store, "penalized", base + "PARAMETER repeat_penalty 1.5\n",
               tmp_path_factory.mktemp("penalized"))  # fmt: skip
    return model_store


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[TestClient]:
    # flash attention on, as in the reference: other kernels, other last bits of the logits,
    # and another token drawn now and then at a high temperature
    app = create_app(ServerConfig(models_root=store, flash_attention=True))
    with TestClient(app, base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def reference(smollm2_gguf: Path) -> Reference:
    return Reference(smollm2_gguf)


@pytest.fixture(scope="module")
def prompt(reference: Reference) -> list[int]:
    return reference.tokenize(PROMPT)


def ask(
    client: TestClient, route: str, options: dict[str, Any], model: str = "plain"
) -> dict[str, Any]:
    """One non-streamed request; the generate route sends the chat route's rendered prompt raw."""
    if route == "generate":
        body: dict[str, Any] = {"prompt": PROMPT, "raw": True}
    else:
        body = {"messages": [{"role": "user", "content": QUESTION}]}
    r = client.post(
        f"/api/{route}", json={"model": model, "stream": False, "options": options, **body}
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    out["text"] = out["response"] if route == "generate" else out["message"]["content"]
    return out


def runner_of(client: TestClient, model: str = "plain") -> Runner:
    scheduler = client.app.state.mfc.scheduler  # type: ignore[attr-defined]
    (runner,) = [r for r in scheduler.runners.values() if r.model.name == f"{model}:latest"]
    return runner  # type: ignore[no-any-return]


def test_both_routes_send_the_same_prompt(client: TestClient) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    r = client.post(
        "/api/chat", json={"model": "plain", "_debug_render_only": True, "messages": messages}
    )
    assert r.json()["_debug_info"]["rendered_template"] == PROMPT


# --- sampling options: the answer is llama.cpp's ------------------------------------------

Expect = Callable[[Reference, list[int], dict[str, Any]], str]


def greedy(ref: Reference, prompt: list[int], opts: dict[str, Any]) -> str:
    keys = ("repeat_penalty", "frequency_penalty", "presence_penalty", "repeat_last_n")
    kw = {k: opts[k] for k in keys if k in opts}
    return ref.text([s.token for s in ref.greedy(prompt, opts.get("num_predict", N), **kw)])


def sampled(ref: Reference, prompt: list[int], opts: dict[str, Any]) -> str:
    full = dataclasses.replace(DEFAULTS, **opts)
    tokens = ref.sampled(
        prompt, N, seed=full.seed, temperature=full.temperature, top_k=full.top_k,
        top_p=full.top_p, min_p=full.min_p, typical_p=full.typical_p,
    )  # fmt: skip
    return ref.text(tokens)


GREEDY = {"temperature": 0, "num_predict": N}
HOT = {"temperature": 1.5, "seed": SEED, "num_predict": N}

#: option -> (request options, the same request without the option, the reference)
SAMPLING: dict[str, tuple[dict[str, Any], dict[str, Any], Expect]] = {
    "repeat_penalty": ({**GREEDY, "repeat_penalty": 1.5}, GREEDY, greedy),
    "frequency_penalty": ({**GREEDY, "frequency_penalty": 1.0}, GREEDY, greedy),
    "presence_penalty": ({**GREEDY, "presence_penalty": 1.5}, GREEDY, greedy),
    "repeat_last_n": (
        {**GREEDY, "repeat_penalty": 1.5, "repeat_last_n": 3},
        {**GREEDY, "repeat_penalty": 1.5},
        greedy,
    ),
    "temperature": (HOT, {**HOT, "temperature": DEFAULTS.temperature}, sampled),
    "seed": ({**HOT, "seed": SEED + 1}, HOT, sampled),
    "top_k": ({**HOT, "top_k": 3}, HOT, sampled),
    "top_p": ({**HOT, "top_p": 0.5}, HOT, sampled),
    "min_p": ({**HOT, "min_p": 0.1}, HOT, sampled),
    "typical_p": ({**HOT, "typical_p": 0.5}, HOT, sampled),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("option", SAMPLING)
def test_sampling_option_matches_llama_cpp(
    client: TestClient, reference: Reference, prompt: list[int], option: str, route: str
) -> None:
    opts, without, expect = SAMPLING[option]
    want = expect(reference, prompt, opts)
    assert want != expect(reference, prompt, without), f"{option} must change the answer"
    got = ask(client, route, opts)
    assert got["text"] == want
    if option in ("seed", "temperature"):  # the same seed, the same answer
        assert ask(client, route, opts)["text"] == want


def test_repeat_last_n_minus_one_is_the_whole_context(
    client: TestClient, reference: Reference, prompt: list[int]
) -> None:
    opts = {**GREEDY, "repeat_penalty": 1.5, "repeat_last_n": -1}
    assert ask(client, "chat", opts)["text"] == greedy(reference, prompt, opts)


@pytest.mark.parametrize("route", ROUTES)
def test_modelfile_penalty_reaches_the_sampler(
    client: TestClient, reference: Reference, prompt: list[int], route: str
) -> None:
    """`PARAMETER repeat_penalty 1.5` (this used to be a 500 on every request)."""
    want = greedy(reference, prompt, {**GREEDY, "repeat_penalty": 1.5})
    assert want != greedy(reference, prompt, GREEDY)
    assert ask(client, route, GREEDY, model="penalized")["text"] == want


# --- generation limits --------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_num_predict_counts_tokens(
    client: TestClient, reference: Reference, prompt: list[int], route: str
) -> None:
    got = ask(client, route, {**GREEDY, "num_predict": 5})
    assert got["eval_count"] == 5 and got["done_reason"] == "length"
    assert got["text"] == greedy(reference, prompt, {"num_predict": 5})


@pytest.mark.parametrize("route", ROUTES)
def test_num_predict_zero_is_no_limit(client: TestClient, reference: Reference, route: str) -> None:
    """The reference leaves 0 out of its runner request, so 0 means "until the end token"
    (here an answer of a few tokens), not "one token"."""
    question = "What is the capital of France?"
    text = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    steps = reference.greedy(reference.tokenize(text), 64)
    assert 1 < len(steps) < 64  # it ends by itself
    body: dict[str, Any] = {
        "model": "plain",
        "stream": False,
        "options": {**GREEDY, "num_predict": 0},
    }
    if route == "generate":
        body["prompt"] = question
    else:
        body["messages"] = [{"role": "user", "content": question}]
    out = client.post(f"/api/{route}", json=body).json()
    assert out["done_reason"] == "stop" and out["eval_count"] == len(steps) + 1  # + end token
    text = out["response"] if route == "generate" else out["message"]["content"]
    assert text == reference.text([s.token for s in steps])


@pytest.mark.parametrize("route", ROUTES)
def test_stop_cuts_before_the_stop_string(
    client: TestClient, reference: Reference, prompt: list[int], route: str
) -> None:
    whole = greedy(reference, prompt, GREEDY)
    word = whole.split()[3]
    got = ask(client, route, {**GREEDY, "stop": [word, "never-generated"]})
    assert got["text"] == whole[: whole.index(word)] and got["done_reason"] == "stop"


@pytest.mark.parametrize("route", ROUTES)
def test_num_keep_is_kept_when_the_prompt_is_truncated(
    client: TestClient, reference: Reference, route: str
) -> None:
    """A prompt longer than num_ctx keeps its first num_keep tokens (here: the question)
    and then its end."""
    question = QUESTION + " " + " ".join(f"item{i}" for i in range(300))
    tokens = reference.tokenize(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    keep = 100
    opts = {**GREEDY, "num_ctx": 256, "num_keep": keep, "num_predict": 8}
    body: dict[str, Any] = {"model": "plain", "stream": False, "options": opts}
    if route == "generate":
        body["prompt"] = question
    else:
        body["messages"] = [{"role": "user", "content": question}]
    r = client.post(f"/api/{route}", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    limit = runner_of(client).engine.n_ctx_seq - 1

    def truncated(n: int) -> list[int]:
        return tokens[:n] + tokens[len(tokens) - (limit - n) :]

    def answer(n: int) -> str:
        return reference.text([s.token for s in reference.greedy(truncated(n), 8)])

    assert len(tokens) > limit and answer(keep) != answer(DEFAULTS.num_keep)
    assert out["prompt_eval_count"] == limit
    assert (out["response"] if route == "generate" else out["message"]["content"]) == answer(keep)
    if route == "generate":
        assert out["context"][:limit] == truncated(keep)


# --- runner options: they load the model with these settings ------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_num_ctx_is_the_loaded_context(client: TestClient, route: str) -> None:
    ask(client, route, {**GREEDY, "num_predict": 1, "num_ctx": 768})
    ps = client.get("/api/ps").json()["models"]
    assert [m["context_length"] for m in ps if m["name"] == "plain:latest"] == [768]
    assert runner_of(client).engine.n_ctx_seq >= 768


RUNNER: dict[str, tuple[Any, Callable[[Runner], Any]]] = {
    "num_batch": (64, lambda r: r.engine.settings.n_batch),
    "num_thread": (2, lambda r: r.engine.settings.n_threads),
    "use_mmap": (False, lambda r: r.llama.use_mmap),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("option", RUNNER)
def test_runner_option_reaches_the_loaded_model(
    client: TestClient, reference: Reference, prompt: list[int], option: str, route: str
) -> None:
    value, seen = RUNNER[option]
    got = ask(client, route, {**GREEDY, option: value})
    assert seen(runner_of(client)) == value
    assert got["text"] == greedy(reference, prompt, GREEDY)  # the same model, the same answer


#: accepted and without effect here, as in the reference on a CPU and without a draft model
IGNORED = {"num_gpu": 0, "main_gpu": 1, "draft_num_predict": 8}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("option", IGNORED)
def test_gpu_and_draft_options_are_accepted(
    client: TestClient, reference: Reference, prompt: list[int], option: str, route: str
) -> None:
    got = ask(client, route, {**GREEDY, option: IGNORED[option]})
    assert got["text"] == greedy(reference, prompt, GREEDY)


def test_every_option_has_a_row() -> None:
    covered = {*SAMPLING, *RUNNER, *IGNORED, "num_predict", "stop", "num_keep", "num_ctx"}
    assert covered == {f.name for f in dataclasses.fields(ApiOptions)}


# --- the OpenAI routes' options (mapped onto the same table, as the reference maps them) --


def sampled_openai(ref: Reference, prompt: list[int], req: dict[str, Any]) -> str:
    """OpenAI's defaults: temperature 1 and top_p 1; top_k stays the model's."""
    opts = {"temperature": req.get("temperature", 1.0), "top_p": req.get("top_p", 1.0)}
    return sampled(ref, prompt, {**opts, "seed": req["seed"]})


def greedy_openai(ref: Reference, prompt: list[int], req: dict[str, Any]) -> str:
    keys = {"frequency_penalty", "presence_penalty"}
    opts = {k: v for k, v in req.items() if k in keys}
    return greedy(ref, prompt, {**opts, "num_predict": req["max_tokens"]})


OAI_GREEDY = {"temperature": 0, "max_tokens": N}
OAI_HOT = {"temperature": 1.5, "seed": SEED, "max_tokens": N}

OPENAI: dict[str, tuple[dict[str, Any], dict[str, Any], Expect]] = {
    "frequency_penalty": ({**OAI_GREEDY, "frequency_penalty": 1.0}, OAI_GREEDY, greedy_openai),
    "presence_penalty": ({**OAI_GREEDY, "presence_penalty": 1.5}, OAI_GREEDY, greedy_openai),
    "max_tokens": ({**OAI_GREEDY, "max_tokens": 5}, OAI_GREEDY, greedy_openai),
    "temperature": (OAI_HOT, {**OAI_HOT, "temperature": 0.7}, sampled_openai),
    "top_p": ({**OAI_HOT, "top_p": 0.5}, OAI_HOT, sampled_openai),
    "seed": ({**OAI_HOT, "seed": SEED + 1}, OAI_HOT, sampled_openai),
}


def ask_openai(client: TestClient, route: str, req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if route == "chat":
        body = {"messages": [{"role": "user", "content": QUESTION}], **req}
        r = client.post("/v1/chat/completions", json={"model": "plain", **body})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"], r.json()
    r = client.post("/v1/completions", json={"model": "plain", "prompt": QUESTION, **req})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"], r.json()


@pytest.mark.parametrize("route", ROUTES[::-1])
@pytest.mark.parametrize("option", OPENAI)
def test_openai_option_matches_llama_cpp(
    client: TestClient, reference: Reference, prompt: list[int], option: str, route: str
) -> None:
    req, without, expect = OPENAI[option]
    want = expect(reference, prompt, req)
    assert want != expect(reference, prompt, without), f"{option} must change the answer"
    text, body = ask_openai(client, route, req)
    assert text == want
    if option == "max_tokens":
        assert body["usage"]["completion_tokens"] == 5
        assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("route", ROUTES[::-1])
def test_openai_stop(
    client: TestClient, reference: Reference, prompt: list[int], route: str
) -> None:
    whole = greedy(reference, prompt, GREEDY)
    word = whole.split()[3]
    for stop in (word, [word]):
        text, body = ask_openai(client, route, {**OAI_GREEDY, "stop": stop})
        assert text == whole[: whole.index(word)]
        assert body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("route", ROUTES[::-1])
def test_openai_logit_bias_is_ignored_as_by_the_reference(
    client: TestClient, reference: Reference, prompt: list[int], route: str
) -> None:
    """The reference's request types have no logit_bias: it is accepted and has no effect."""
    text, _ = ask_openai(client, route, {**OAI_GREEDY, "logit_bias": {"28": 100}})
    assert text == greedy(reference, prompt, GREEDY)
