"""`mfc serve --ray`: a two-node Ray cluster on this machine serving two models.

Checks model-affine routing (each model's requests land on the replica that holds it, seen
in the `X-Mfc-Replica` header), the official clients through Ray's HTTP proxy, and replica
failure: a replica killed mid-stream ends that stream with a clean error, requests that had
not started are sent again, and Ray replaces the replica without help.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install mfc[ray])")

pytestmark = pytest.mark.timeout(600)
DEPLOY = Path(__file__).resolve().parents[2] / "runtime" / "deploy"

CHAT = {"num_predict": 8, "temperature": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReplicaLog:
    """Which replica (and process) answered each model, read off the response headers."""

    def __init__(self) -> None:
        self.by_model: dict[str, set[str]] = defaultdict(set)
        self.pids: dict[str, str] = {}
        self.lock = threading.Lock()

    def hook(self, response: httpx.Response) -> None:
        replica = response.headers.get("x-mfc-replica")
        if replica is None or not response.request.content:
            return
        model = json.loads(response.request.content).get("model", "")
        with self.lock:
            self.by_model[model].add(replica)
            self.pids[replica] = response.headers["x-mfc-replica-pid"]


@pytest.fixture(scope="module")
def cluster(model_store: Path, minilm_model: str) -> Iterator[str]:
    """A head and a worker node (1 CPU each, one engine replica fits per node) and the app
    deployed over the shared store: two replicas, one model held per replica."""
    from ray.cluster_utils import Cluster

    from runtime import ray_serve
    from runtime.config import ServerConfig

    node = {"num_cpus": 1, "object_store_memory": 100 << 20}
    ray_cluster = Cluster()
    try:
        ray_cluster.add_node(**node, include_dashboard=False)
        ray_cluster.add_node(**node)
        ray_cluster.wait_for_nodes()
        port = free_port()
        config = ServerConfig(
            host="127.0.0.1", port=port, models_root=model_store, max_body_bytes=1 << 20
        )
        settings = ray_serve.RaySettings(min_replicas=2, max_replicas=2, models_per_replica=1)
        ray_serve.deploy(config, settings, ray_cluster.address)
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            ray_serve.shutdown()
        finally:
            ray_cluster.shutdown()


def test_single_machine_serve_imports_no_ray() -> None:
    code = (
        "import sys; from runtime.config import ServerConfig; from runtime.server import "
        "make_server; import toolchain.cli.serve; make_server(ServerConfig()); "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_id_is_one_spelling_per_model() -> None:
    from runtime.ray_serve import model_id

    assert model_id("/api/chat", b'{"model": "demo"}') == "demo:latest"
    assert model_id("/v1/embeddings", b'{"model": "demo:latest"}') == "demo:latest"
    assert model_id("/api/show", b'{"name": "team/m:v1"}') == "team/m:v1"
    assert model_id("/api/tags", b"") == ""
    assert model_id("/api/chat", b"not json") == ""  # the replica answers Go's 400
    assert model_id("/api/chat", b'{"model": 3}') == ""


def test_stream_error_is_in_the_stream_format() -> None:
    from runtime.ray_serve import stream_error

    line = stream_error("application/x-ndjson", "gone")
    assert json.loads(line) == {"error": "gone"} and line.endswith(b"\n")
    event = stream_error("text/event-stream; charset=utf-8", "gone")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert json.loads(event[6:])["error"]["message"] == "gone"


def test_settings_from_env_fixed_or_autoscaled() -> None:
    from runtime.ray_serve import RaySettings

    fixed = RaySettings.from_env({"MFC_RAY_MIN_REPLICAS": "2"}).engine_options()
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    env = {"MFC_RAY_MAX_REPLICAS": "4", "MFC_RAY_TARGET_ONGOING": "3",
           "MFC_RAY_REPLICA_CPUS": "2.5", "MFC_RAY_REPLICA_MEMORY_MB": "512"}  # fmt: skip
    scaled = RaySettings.from_env(env).engine_options()
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1, "max_replicas": 4, "initial_replicas": 1,
        "target_ongoing_requests": 3, "upscale_delay_s": 30.0, "downscale_delay_s": 600.0,
        "look_back_period_s": 30.0,
    }  # fmt: skip
    assert scaled["ray_actor_options"] == {"num_cpus": 2.5, "memory": 512 << 20}


def test_ray_service_example_builds_the_app() -> None:
    """The KubeRay example's serve config names a builder that makes the app from its args."""
    import importlib

    import yaml
    from ray.serve import Application

    doc = yaml.safe_load((DEPLOY / "ray-service.yaml").read_text())
    assert doc["kind"] == "RayService" and doc["apiVersion"] == "ray.io/v1"
    assert doc["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    (app,) = yaml.safe_load(doc["spec"]["serveConfigV2"])["applications"]
    module, _, attr = app["import_path"].partition(":")
    built = getattr(importlib.import_module(module), attr)(app["args"])
    assert isinstance(built, Application)


@pytest.mark.slow
def test_mfc_serve_ray_starts_serves_and_stops(model_store: Path) -> None:
    """`mfc serve --ray` on a local cluster of its own: answers through Ray, and SIGINT
    removes the app and stops every Ray process it started."""
    import ollama

    from fixtures.local_server import mfc_command

    port = free_port()
    env = {**os.environ, "MFC_MODELS": str(model_store), "MFC_HOST": f"127.0.0.1:{port}"}
    env.pop("RAY_ADDRESS", None)
    log = (model_store.parent / f"serve-ray-{port}.log").open("w+")
    proc = subprocess.Popen([*mfc_command(), "serve", "--ray"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.seek(0) or log.read()
            try:
                if httpx.get(f"{url}/api/version", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mfc serve --ray did not answer"
            time.sleep(1)
        seen = ReplicaLog()
        oc = ollama.Client(host=url, event_hooks={"response": [seen.hook]}, timeout=300)
        reply = oc.chat(model="demo", messages=[{"role": "user", "content": "Hi"}], options=CHAT)
        assert reply.message.content and len(seen.by_model["demo"]) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 0
        log.seek(0)
        assert "mfc serving on Ray at" in log.read()
        # nothing of the cluster it started is left in its process group (stragglers exit
        # within moments of the raylet; zombies wait for their parent)
        for _ in range(30):
            left = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)],
                                  capture_output=True, text=True, check=False).stdout  # fmt: skip
            alive = [line for line in left.splitlines() if line.split()[1][0] != "Z"]
            if not alive:
                break
            time.sleep(1)
        assert not alive, left
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_model_affine_routing_with_official_clients(cluster: str, minilm_model: str) -> None:
    import ollama
    import openai

    seen = ReplicaLog()
    hooks = {"response": [seen.hook]}
    oc = ollama.Client(host=cluster, event_hooks=hooks, timeout=300)
    ai = openai.OpenAI(base_url=f"{cluster}/v1", api_key="x",
                       http_client=httpx.Client(event_hooks=hooks, timeout=300))  # fmt: skip

    def chat(i: int) -> str:
        r = oc.chat(model="demo", messages=[{"role": "user", "content": f"Hi {i}"}], options=CHAT)
        return r.message.content or ""

    def generate(i: int) -> str:
        return oc.generate(model="demo", prompt=f"Count to {i}", options=CHAT).response

    def openai_stream(i: int) -> str:
        parts = ai.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": f"Hello {i}"}],
            max_tokens=8, temperature=0, stream=True,
        )  # fmt: skip
        return "".join(c.choices[0].delta.content or "" for c in parts if c.choices)

    def embed(i: int) -> int:
        return len(oc.embed(model=minilm_model, input=f"sentence {i}").embeddings[0])

    def openai_embed(i: int) -> int:
        return len(ai.embeddings.create(model=minilm_model, input=f"text {i}").data[0].embedding)

    # one request each first, so the two cold loads are spread over the two replicas
    assert chat(0) and embed(0) == 384
    with ThreadPoolExecutor(8) as pool:
        texts = [pool.submit(f, i) for f in (chat, generate, openai_stream) for i in range(3)]
        sizes = [pool.submit(f, i) for f in (embed, openai_embed) for i in range(3)]
        assert all(t.result() for t in texts)
        assert all(s.result() == 384 for s in sizes)

    demo, minilm = seen.by_model["demo"], seen.by_model[minilm_model]
    assert len(demo) == 1 and len(minilm) == 1, dict(seen.by_model)
    assert demo != minilm  # one model per replica: each model stayed on its own replica
    # model-less routes go to any replica and still answer
    tags = httpx.get(f"{cluster}/api/tags", timeout=60)
    assert tags.status_code == 200 and "x-mfc-replica" in tags.headers
    assert {m["name"] for m in tags.json()["models"]} >= {"demo:latest", "minilm:latest"}
    missing = httpx.post(f"{cluster}/api/chat", json={"model": "nope"}, timeout=60)
    assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
    huge = {"model": "demo", "prompt": "x" * (2 << 20)}  # over the 1 MiB MFC_MAX_REQUEST_BODY
    refused = httpx.post(f"{cluster}/api/generate", json=huge, timeout=60)
    assert refused.status_code == 413
    assert refused.json() == {"error": "http: request body too large"}
    metrics = httpx.get(f"{cluster}/metrics", timeout=60)  # one replica's own /metrics
    assert metrics.status_code == 200 and "mfc_http_requests_total{" in metrics.text


@pytest.mark.slow
def test_replica_killed_mid_stream(cluster: str, minilm_model: str) -> None:
    import ollama

    seen = ReplicaLog()
    oc = ollama.Client(host=cluster, event_hooks={"response": [seen.hook]}, timeout=300)
    oc.generate(model="demo", prompt="Hi", options=CHAT)
    (victim,) = seen.by_model["demo"]
    pid = int(seen.pids[victim])

    started = threading.Event()
    outcome: dict[str, object] = {}

    def long_stream() -> None:
        chunks = 0
        try:
            # greedy counting in a raw prompt goes on for thousands of tokens
            counting = ", ".join(str(i) for i in range(1, 30)) + ","
            long = {"num_predict": 4000, "temperature": 0}
            for _ in oc.generate(model="demo", prompt=counting, raw=True, options=long,
                                 stream=True):  # fmt: skip
                chunks += 1
                if chunks == 3:
                    started.set()
            outcome["stream"] = f"finished after {chunks} chunks"
        except ollama.ResponseError as exc:
            outcome["stream"] = exc
        finally:
            started.set()

    streamer = threading.Thread(target=long_stream)
    streamer.start()
    assert started.wait(120)
    # queued behind the stream on the same replica (num_parallel 1): not started yet
    with ThreadPoolExecutor(4) as pool:
        waiting = [
            pool.submit(oc.generate, model="demo", prompt=f"Say {i}", options=CHAT)
            for i in range(3)
        ]
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        answers = [w.result(timeout=300) for w in waiting]
    streamer.join(300)

    assert all(a.done for a in answers)  # 0 lost among the requests that had not started
    error = outcome["stream"]
    assert isinstance(error, ollama.ResponseError), error  # the cut stream: a clean error
    assert "replica" in str(error.error)

    # Ray replaces the dead replica without help: both replicas answer again
    deadline = time.monotonic() + 240
    replicas: set[str] = set()
    while time.monotonic() < deadline and len(replicas - {victim}) < 2:
        r = httpx.post(f"{cluster}/api/embed", json={"model": minilm_model, "input": "x"},
                       timeout=120)  # fmt: skip
        assert r.status_code == 200
        replicas.add(r.headers["x-mfc-replica"])
        r = httpx.post(f"{cluster}/api/generate",
                       json={"model": "demo", "prompt": "x", "stream": False, "options": CHAT},
                       timeout=120)  # fmt: skip
        assert r.status_code == 200
        replicas.add(r.headers["x-mfc-replica"])
        time.sleep(1)
    assert len(replicas - {victim}) == 2, replicas


@pytest.mark.slow
def test_autoscaling_on_ongoing_requests(cluster: str, model_store: Path) -> None:
    """min 1, max 2 replicas, one ongoing request per replica wanted: concurrent requests
    bring a second replica (on the other node); idle, it goes away again."""
    from ray import serve

    from runtime import ray_serve
    from runtime.config import ServerConfig

    port = int(cluster.rsplit(":", 1)[1])
    config = ServerConfig(host="127.0.0.1", port=port, models_root=model_store)
    settings = ray_serve.RaySettings(
        min_replicas=1, max_replicas=2, target_ongoing_requests=1, max_ongoing_requests=2,
        upscale_delay_s=0, downscale_delay_s=2, look_back_period_s=12,
    )  # fmt: skip
    serve.delete(ray_serve.APP_NAME)
    ray_serve.deploy(config, settings, None)

    def running() -> int:
        status = serve.status().applications[ray_serve.APP_NAME]
        return int(status.deployments["MfcEngine"].replica_states.get("RUNNING", 0))

    assert running() == 1
    body = {"model": "demo", "prompt": "Tell a story.", "stream": False,
            "options": {"num_predict": 24, "temperature": 0}}  # fmt: skip
    replicas: set[str] = set()
    deadline = time.monotonic() + 150
    with ThreadPoolExecutor(4) as pool:
        while len(replicas) < 2 and time.monotonic() < deadline:
            answers = list(pool.map(
                lambda _: httpx.post(f"{cluster}/api/generate", json=body, timeout=300),
                range(4),
            ))  # fmt: skip
            assert all(a.status_code == 200 for a in answers)
            replicas |= {a.headers["x-mfc-replica"] for a in answers}
    assert len(replicas) == 2, "no second replica under load"
    deadline = time.monotonic() + 90
    while running() > 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert running() == 1, "idle, the deployment did not scale back to min_replicas"


@pytest.mark.slow
def test_replicas_pull_missing_models_from_a_registry(
    cluster: str, model_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Redeploy over an empty store: each replica pulls `demo` from a local docker-registry
    (every blob checked against its digest) on its first request for it."""
    import ollama
    from ray import serve

    from runtime import ray_serve
    from runtime.config import ServerConfig
    from tests.toolchain.registry.harness import REGISTRY_BIN, start_registry
    from toolchain.registry.push import push_model
    from toolchain.store import Store

    if not REGISTRY_BIN.exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: `make system-deps` installs docker-registry")
    registry = start_registry(tmp_path_factory.mktemp("registry"))
    source = Store.open(model_store)
    try:
        remote = f"{registry.host}/library/demo:latest"
        source.copy("demo", remote)
        pushed = push_model(remote, store=source, insecure=True)
        source.delete(remote)  # demo keeps every blob

        empty = tmp_path_factory.mktemp("node-store")
        port = int(cluster.rsplit(":", 1)[1])
        config = ServerConfig(host="127.0.0.1", port=port, models_root=empty)
        settings = ray_serve.RaySettings(
            min_replicas=1, max_replicas=1, pull_from=f"{registry.host}/library",
            pull_insecure=True,
        )  # fmt: skip
        serve.delete(ray_serve.APP_NAME)
        ray_serve.deploy(config, settings, None)

        seen = ReplicaLog()
        oc = ollama.Client(host=cluster, event_hooks={"response": [seen.hook]}, timeout=300)
        assert oc.generate(model="demo", prompt="Hi", options=CHAT).done
        assert oc.chat(model="demo", messages=[{"role": "user", "content": "Hi"}],
                       options=CHAT).done  # fmt: skip
        pulled = Store.open(empty)
        entries = {e.name.display(): e.digest for e in pulled.list_models()}
        original = next(e for e in source.list_models() if e.name.display() == "demo:latest")
        # the registry's name (what a later `mfc pull` updates) and the name asked for
        assert entries == {remote: pushed.digest, "demo:latest": pushed.digest}
        assert pushed.digest == original.digest
        missing = httpx.post(f"{cluster}/api/chat", json={"model": "absent"}, timeout=120)
        assert missing.status_code == 404
        assert missing.json() == {"error": "model 'absent' not found"}
    finally:
        registry.stop()
