"""Operations of `mfc serve`: /metrics, probes, request ids, JSON logs, preload, drain.

Each test runs a real `mfc serve` process over the shared test store and checks what a
deployment sees: the exposition parsed with prometheus-client's own parser and compared with
the counts the API itself reports, probe status codes, and what SIGTERM does to open
connections and to streams in flight.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.local_server import ServerProcess, ServerStartError, server_process
from tests.conftest import MODELS
from tests.runtime.conftest import build_into, mfc

pytestmark = pytest.mark.timeout(300)

#: SmolLM2 with the bare messages as its prompt, greedy: it counts on from "1, 2, 3," without
#: end, at a few tokens a second on the test machine (streams that are in flight for long)
COUNTER_MODELFILE = """FROM {gguf}
TEMPLATE \"\"\"{{{{ range .Messages }}}}{{{{ .Content }}}}{{{{ end }}}}\"\"\"
PARAMETER temperature 0
PARAMETER num_ctx 512
"""
COUNT = "1, 2, 3, 4, 5,"


@pytest.fixture(scope="session")
def counter_model(
    model_store: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    build_into(model_store, "counter", COUNTER_MODELFILE.format(gguf=smollm2_gguf),
               tmp_path_factory.mktemp("counter"))  # fmt: skip
    return "counter"


def counting(model: str, num_predict: int) -> dict[str, object]:
    """A /api/generate body whose stream runs for `num_predict` tokens."""
    return {"model": model, "prompt": COUNT, "options": {"num_predict": num_predict}}


@contextmanager
def serve(
    store: Path,
    *args: str,
    env: dict[str, str] | None = None,
    wait_path: str = "/",
    port: int | None = None,
) -> Iterator[tuple[ServerProcess, Path]]:
    """`mfc serve ARGS` over `store`, with its log file."""
    log = store.parent / f"ops-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        try:
            with server_process({"MFC_MODELS": str(store), **(env or {})}, args=args, port=port,
                                output=out, wait_path=wait_path) as server:  # fmt: skip
                yield server, log
        except ServerStartError as exc:
            pytest.fail(f"{exc}:\n{log.read_text()}")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by (name, labels), via prometheus-client's parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(all_samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return all_samples[(name, frozenset(labels.items()))]


def chat(url: str, model: str, num_predict: int, **extra: object) -> dict[str, object]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Count to ten."}],
        "options": {"num_predict": num_predict, "seed": 1},
        "stream": False,
        **extra,
    }
    r = httpx.post(url + "/api/chat", json=body, timeout=120)
    assert r.status_code == 200, r.text
    result: dict[str, object] = r.json()
    return result


def test_metrics_count_what_the_api_reports(
    model_store: Path, tiny_llama_model: str, minilm_model: str
) -> None:
    with serve(model_store) as (server, _):
        url = server.url
        reply = chat(url, tiny_llama_model, 12)
        embedded = httpx.post(url + "/api/embed", json={"model": minilm_model,
                              "input": ["hello world", "a second text"]}, timeout=60)  # fmt: skip
        assert embedded.status_code == 200
        missing = httpx.post(url + "/api/chat", json={"model": "nope", "messages": []})
        assert missing.status_code == 404
        ps = httpx.get(url + "/api/ps").json()["models"]
        created = httpx.post(url + "/api/create", json={"model": "ops-copy", "from":
                             tiny_llama_model, "stream": False}, timeout=60)  # fmt: skip
        assert created.json() == {"status": "success"}
        assert httpx.request("DELETE", url + "/api/delete", json={"model": "ops-copy"}).is_success
        pulled = httpx.post(url + "/api/pull", json={"model": "127.0.0.1:9/x/y",
                            "insecure": True, "stream": False}, timeout=60)  # fmt: skip
        assert pulled.status_code == 500  # nothing listens on port 9: the pull fails
        r = httpx.get(url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(r.text)
    chat_model, embed_model = f"{tiny_llama_model}:latest", f"{minilm_model}:latest"
    assert value(got, "mfc_prompt_tokens_total", model=chat_model) == reply["prompt_eval_count"]
    assert value(got, "mfc_tokens_predicted_total", model=chat_model) == reply["eval_count"] == 12
    assert value(got, "mfc_embedding_inputs_total", model=embed_model) == 2
    tokens = embedded.json()["prompt_eval_count"]
    assert value(got, "mfc_embedding_tokens_total", model=embed_model) == tokens
    chat_ok = {"method": "POST", "route": "/api/chat", "status": "200", "model": chat_model}
    assert value(got, "mfc_http_requests_total", **chat_ok) == 1
    not_found = {"method": "POST", "route": "/api/chat", "status": "404", "model": ""}
    assert value(got, "mfc_http_requests_total", **not_found) == 1
    assert value(got, "mfc_time_to_first_token_seconds_count", model=chat_model) == 1
    gaps = value(got, "mfc_inter_token_latency_seconds_count", model=chat_model)
    assert 1 <= gaps <= 11  # one per token event after the first; pieces may join tokens
    assert value(got, "mfc_model_load_duration_seconds_count", model=chat_model) == 1
    assert value(got, "mfc_models_loaded") == 2
    sizes = {m["name"]: m["size"] for m in ps}
    assert value(got, "mfc_model_memory_bytes", model=chat_model) == sizes[chat_model]
    used = value(got, "mfc_kv_cache_tokens", model=chat_model)
    capacity = value(got, "mfc_kv_cache_capacity_tokens", model=chat_model)
    assert 0 < used <= capacity
    assert value(got, "mfc_kv_cache_usage_ratio", model=chat_model) == pytest.approx(
        used / capacity
    )
    assert value(got, "mfc_requests_processing", model=chat_model) == 0
    assert value(got, "mfc_requests_deferred", model=chat_model) == 0
    assert value(got, "mfc_ready") == 1
    assert value(got, "mfc_model_operations_total", operation="create", result="success") == 1
    assert value(got, "mfc_model_operations_total", operation="pull", result="error") == 1
    assert value(got, "mfc_model_operation_duration_seconds_count", operation="create") == 1


def test_request_ids_and_json_access_log(model_store: Path, tiny_llama_model: str) -> None:
    with serve(model_store, "--log-format", "json") as (server, log):
        url = server.url
        given = httpx.post(url + "/api/chat", headers={"X-Request-Id": "trace-42"}, json={
            "model": tiny_llama_model, "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 5}, "stream": False})  # fmt: skip
        made = httpx.get(url + "/api/version")
        bad = httpx.get(url + "/api/version", headers={"X-Request-Id": "x" * 200})
    assert given.headers["x-request-id"] == "trace-42"
    assert len(made.headers["x-request-id"]) == 32
    assert bad.headers["x-request-id"] != "x" * 200
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = {line["request_id"]: line for line in lines if line["logger"] == "mfc.access"}
    entry = access["trace-42"]
    reply = given.json()
    assert entry["status"] == 200 and entry["path"] == "/api/chat"
    assert entry["model"] == f"{tiny_llama_model}:latest"
    assert entry["prompt_tokens"] == reply["prompt_eval_count"]
    assert entry["eval_tokens"] == reply["eval_count"] == 5
    assert entry["duration_ms"] >= entry["ttft_ms"] > 0
    assert access[made.headers["x-request-id"]]["path"] == "/api/version"
    assert any(line["msg"].startswith("loaded ") for line in lines)  # events are JSON too


def test_preload_loads_before_ready(model_store: Path, tiny_llama_model: str) -> None:
    with serve(model_store, "--preload", tiny_llama_model, wait_path="/ready") as (server, _):
        ps = httpx.get(server.url + "/api/ps").json()["models"]
        assert [m["name"] for m in ps] == [f"{tiny_llama_model}:latest"]
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    with serve(model_store, env={"MFC_PRELOAD": tiny_llama_model}, wait_path="/ready") as (
        server,
        _,
    ):
        assert len(httpx.get(server.url + "/api/ps").json()["models"]) == 1


def test_preload_of_a_missing_model_is_a_clear_error(model_store: Path) -> None:
    result = mfc("serve", "--preload", "no-such-model", env={"MFC_MODELS": str(model_store),
                 "MFC_HOST": "127.0.0.1:0"})  # fmt: skip
    assert result.returncode == 1
    assert "cannot preload no-such-model: model 'no-such-model' not found" in result.stderr


def _stream_lines(response: httpx.Response) -> Iterator[str]:
    return (line for line in response.iter_lines() if line)


def test_ready_is_503_while_the_queue_is_full(model_store: Path, counter_model: str) -> None:
    with serve(model_store, env={"OLLAMA_MAX_QUEUE": "1"}) as (server, _):
        url = server.url
        assert httpx.get(url + "/ready").status_code == 200
        body = counting(counter_model, 100000)
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=60) as r:
            lines = _stream_lines(r)  # kept: dropping the iterator would close the stream
            next(lines)
            ready = httpx.get(url + "/ready")
            assert (ready.status_code, ready.json()) == (503, {"status": "busy"})
            assert httpx.get(url + "/health").status_code == 200
        for _ in range(100):  # the stream's end is noticed when the server next writes
            if httpx.get(url + "/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert httpx.get(url + "/ready").json() == {"status": "ready"}


def test_sigterm_drains_refuses_new_work_and_exits_0(model_store: Path, counter_model: str) -> None:
    with serve(model_store, "--grace-period", "60") as (server, log):
        url = server.url
        probe = httpx.Client(timeout=30)  # a connection opened before the drain
        # long enough to still be running 0.5 s after SIGTERM on a quiet machine too: with
        # TCP_NODELAY the server streams as fast as it decodes, and 40 tokens were done by then
        body = counting(counter_model, 400)
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=120) as r:
            lines = _stream_lines(r)
            first = json.loads(next(lines))
            # (re)open the connection now: uvicorn closes one idle for 5 s
            assert probe.get(url + "/health").status_code == 200
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            ready = probe.get(url + "/ready")
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
            refused = probe.post(url + "/api/chat", json={"model": counter_model})
            assert refused.status_code == 503
            assert refused.json() == {"error": "server is shutting down"}
            assert refused.headers["retry-after"] == "5"
            with pytest.raises(httpx.ConnectError):
                httpx.get(url + "/health", timeout=5)  # the listening socket is closed
            rest = [json.loads(line) for line in lines]
        assert first["done"] is False
        assert rest[-1]["done"] is True and rest[-1]["eval_count"] == 400
        assert server.proc.wait(timeout=60) == 0
        probe.close()
    text = log.read_text()
    assert "SIGTERM: draining" in text and f"unloading {counter_model}:latest" in text


def test_streams_cut_at_the_deadline_end_with_an_error_item(
    model_store: Path, counter_model: str
) -> None:
    """NDJSON and SSE streams end with an error item; a `stream: false` request gets a 503."""
    import threading

    env = {"OLLAMA_NUM_PARALLEL": "3", "MFC_GRACE_PERIOD": "1"}
    with serve(model_store, env=env) as (server, log):
        url = server.url
        ndjson = counting(counter_model, 100000)
        sse = {"model": counter_model, "stream": True, "max_tokens": 100000, "temperature": 0,
               "messages": [{"role": "user", "content": COUNT}]}  # fmt: skip
        whole: list[httpx.Response] = []
        single = threading.Thread(target=lambda: whole.append(httpx.post(
            url + "/api/generate", json={**ndjson, "stream": False}, timeout=120)))  # fmt: skip
        with (
            httpx.stream("POST", url + "/api/generate", json=ndjson, timeout=120) as a,
            httpx.stream("POST", url + "/v1/chat/completions", json=sse, timeout=120) as b,
        ):
            a_lines, b_lines = _stream_lines(a), _stream_lines(b)
            next(a_lines), next(b_lines)
            single.start()
            for _ in range(200):
                inflight = samples(httpx.get(url + "/metrics").text)
                if value(inflight, "mfc_requests_processing", model=f"{counter_model}:latest") == 3:
                    break
                time.sleep(0.05)
            server.proc.send_signal(signal.SIGTERM)
            # whole chunked bodies: httpx raises on a broken chunked read
            a_rest, b_rest = list(a_lines), list(b_lines)
        single.join(60)
        assert server.proc.wait(timeout=60) == 0
    message = "server is shutting down: the grace period ended before the response did"
    assert json.loads(a_rest[-1]) == {"error": message}
    assert b_rest[-1] == "data: [DONE]"
    error = json.loads(b_rest[-2].removeprefix("data: "))
    assert error["error"]["message"] == message
    (response,) = whole
    assert (response.status_code, response.json()) == (503, {"error": message})
    assert "grace period over: ended 3 generation(s)" in log.read_text()


def test_second_ctrl_c_cuts_at_once(model_store: Path, counter_model: str) -> None:
    with serve(model_store, "--grace-period", "600") as (server, _):
        body = counting(counter_model, 100000)
        with httpx.stream("POST", server.url + "/api/generate", json=body, timeout=120) as r:
            lines = _stream_lines(r)
            next(lines)
            server.proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            server.proc.send_signal(signal.SIGINT)
            last = json.loads(list(lines)[-1])
        assert "error" in last
        assert server.proc.wait(timeout=60) == 0


def test_ready_is_503_while_preloading(model_store: Path, tiny_llama_model: str) -> None:
    """In process, with the preload held back until the test lets it go."""
    import asyncio
    import threading

    from starlette.testclient import TestClient

    from runtime.app import create_app
    from runtime.config import ServerConfig
    from toolchain.store import Store

    release = threading.Event()
    app = create_app(ServerConfig(preload=(tiny_llama_model,)), Store.open(model_store))
    scheduler = app.state.mfc.scheduler
    load = scheduler.acquire

    async def held_load(*args: object) -> object:
        await asyncio.to_thread(release.wait, 60)
        return await load(*args)

    scheduler.acquire = held_load
    with TestClient(app, base_url="http://127.0.0.1") as client:
        ready = client.get("/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "loading"})
        assert client.get("/health").status_code == 200
        assert client.get("/api/ps").json() == {"models": []}
        release.set()
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/ready").json() == {"status": "ready"}
        assert client.get("/api/ps").json()["models"][0]["name"] == f"{tiny_llama_model}:latest"


def test_queue_depth_and_in_flight_per_model(model_store: Path, counter_model: str) -> None:
    """One slot, two streams: one is decoded, the other waits for the slot."""
    import threading

    def second(url: str, body: dict[str, object], answered: list[str]) -> None:
        # its status line only comes with its first token, once the first stream has ended
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=120) as r:
            answered.append(next(_stream_lines(r)))

    with serve(model_store, env={"OLLAMA_NUM_PARALLEL": "1"}) as (server, _):
        url = server.url
        body = counting(counter_model, 100000)
        answered: list[str] = []
        with httpx.stream("POST", url + "/api/generate", json=body, timeout=60) as a:
            lines = _stream_lines(a)
            next(lines)
            waiting = threading.Thread(target=second, args=(url, body, answered))
            waiting.start()
            model = f"{counter_model}:latest"
            for _ in range(200):
                got = samples(httpx.get(url + "/metrics").text)
                if value(got, "mfc_requests_deferred", model=model) == 1:
                    break  # (it was "processing" while its prompt was being tokenized)
                time.sleep(0.05)
            assert value(got, "mfc_requests_processing", model=model) == 1
            assert value(got, "mfc_requests_deferred", model=model) == 1
            assert value(got, "mfc_requests_inflight") == 2
            assert not answered
        waiting.join(120)  # the first stream is closed: the second gets the slot
        assert answered and json.loads(answered[0])["done"] is False


def test_ready_reports_a_preload_that_fails(
    tmp_path: Path, tiny_llama_model: str, model_store: Path
) -> None:
    store = tmp_path / "store"
    build_into(store, "broken", f"FROM {MODELS / 'tiny-llama'}\n", tmp_path)
    (blob,) = [p for p in (store / "blobs").iterdir() if p.stat().st_size > 100_000]
    blob.write_bytes(b"GGUF" + b"\0" * 64)  # the weights are gone: llama.cpp cannot load it
    with serve(store, "--preload", "broken") as (server, _):
        for _ in range(200):
            ready = httpx.get(server.url + "/ready")
            if ready.json()["status"] != "loading":
                break
            time.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["status"] == "preload failed"
        assert ready.json()["error"]
        assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.parametrize(
    ("env", "preload", "grace", "log_format"),
    [
        ({}, (), 30.0, "text"),
        ({"MFC_PRELOAD": "demo, minilm  x", "MFC_GRACE_PERIOD": "2.5", "MFC_LOG_FORMAT": "JSON"},
         ("demo", "minilm", "x"), 2.5, "json"),
        ({"MFC_GRACE_PERIOD": "10s", "MFC_LOG_FORMAT": "'json'"}, (), 10.0, "json"),
        ({"MFC_GRACE_PERIOD": "-1", "MFC_LOG_FORMAT": "xml"}, (), 30.0, "text"),
        ({"MFC_GRACE_PERIOD": "soon"}, (), 30.0, "text"),
        ({"MFC_GRACE_PERIOD": "0"}, (), 0.0, "text"),
    ],
)  # fmt: skip
def test_operations_environment(
    env: dict[str, str], preload: tuple[str, ...], grace: float, log_format: str
) -> None:
    from runtime.config import ServerConfig

    config = ServerConfig.from_env(env)
    assert (config.preload, config.grace_period, config.log_format) == (preload, grace, log_format)
