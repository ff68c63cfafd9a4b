"""The deployment examples of runtime/deploy/ with the real programs: Prometheus scraping
`mfc serve`, nginx balancing two replicas through a rolling restart and a crash, and the
Kubernetes probes against a server started with the Deployment's own environment.

Prometheus and nginx are Debian's packages (`make system-deps`), each run in the
foreground on a free loopback port with a temporary configuration rendered from the
example: only addresses, ports and file paths are changed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from fixtures.local_server import ServerProcess, free_port
from tests.runtime.test_ops import serve

DEPLOY = Path(__file__).resolve().parents[2] / "runtime" / "deploy"

pytestmark = pytest.mark.timeout(600)


def program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian package {name})")
    return path


def wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# --- Prometheus ----------------------------------------------------------------------------


@contextmanager
def prometheus(targets: list[str], tmp: Path) -> Iterator[str]:
    """Prometheus scraping `targets` every second, with deploy/prometheus.yml's job."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [program("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/-/ready").status_code == 200, "prometheus")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def query(url: str, promql: str) -> dict[str, float]:
    """An instant query's result: {job/instance-free label text: value}."""
    r = httpx.get(url + "/api/v1/query", params={"query": promql})
    assert r.status_code == 200, r.text
    out = {}
    for item in r.json()["data"]["result"]:
        labels = {k: v for k, v in item["metric"].items() if k not in ("job", "instance")}
        out[json.dumps(labels, sort_keys=True)] = float(item["value"][1])
    return out


def test_prometheus_scrapes_the_chat_and_embed_series(
    model_store: Path, tiny_llama_model: str, minilm_model: str, tmp_path: Path
) -> None:
    with serve(model_store) as (server, _):
        chat = httpx.post(server.url + "/api/chat", timeout=120, json={
            "model": tiny_llama_model, "messages": [{"role": "user", "content": "hi"}],
            "options": {"num_predict": 9}, "stream": False}).json()  # fmt: skip
        embed = httpx.post(server.url + "/api/embed", timeout=120, json={
            "model": minilm_model, "input": ["one", "two", "three"]}).json()  # fmt: skip
        with prometheus([server.url.removeprefix("http://")], tmp_path) as prom:
            chat_model, embed_model = f"{tiny_llama_model}:latest", f"{minilm_model}:latest"
            predicted = f'mfc_tokens_predicted_total{{model="{chat_model}"}}'
            wait_for(lambda: query(prom, predicted), "the first scrape")
            assert list(query(prom, predicted).values()) == [chat["eval_count"]]
            prompt = query(prom, f'mfc_prompt_tokens_total{{model="{chat_model}"}}')
            assert list(prompt.values()) == [chat["prompt_eval_count"]]
            inputs = query(prom, f'mfc_embedding_inputs_total{{model="{embed_model}"}}')
            assert list(inputs.values()) == [3]
            tokens = query(prom, f'mfc_embedding_tokens_total{{model="{embed_model}"}}')
            assert list(tokens.values()) == [embed["prompt_eval_count"]]
            requests = query(prom, 'mfc_http_requests_total{route=~"/api/(chat|embed)"}')
            assert requests == {
                json.dumps({"__name__": "mfc_http_requests_total", "method": "POST",
                            "model": m, "route": route, "status": "200"},
                           sort_keys=True): 1.0
                for m, route in ((chat_model, "/api/chat"), (embed_model, "/api/embed"))
            }  # fmt: skip
            ttft = query(prom, f'mfc_time_to_first_token_seconds_count{{model="{chat_model}"}}')
            assert list(ttft.values()) == [1]
            assert list(query(prom, "mfc_models_loaded").values()) == [2]
            assert list(query(prom, "up").values()) == [1]


# --- Kubernetes ------------------------------------------------------------------------------


def test_kubernetes_probes_answer_as_the_deployment_expects(
    model_store: Path, tiny_llama_model: str
) -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    grace = float(env["MFC_GRACE_PERIOD"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + grace  # drained before SIGKILL
    assert container["args"] == ["serve"]
    # the container's environment, with our store, address and a model the store has
    env = {k: v for k, v in env.items() if k not in ("OLLAMA_HOST", "MFC_MODELS")}
    env["MFC_PRELOAD"] = tiny_llama_model
    with serve(model_store, env=env) as (server, log):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            wait_for(lambda p=path: httpx.get(server.url + p).status_code == 200, probe)
        ps = httpx.get(server.url + "/api/ps").json()["models"]
        assert int(ps[0]["expires_at"][:4]) > 2100  # OLLAMA_KEEP_ALIVE=-1: stays resident
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(grace) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["msg"].startswith("preloaded") for line in lines)  # MFC_LOG_FORMAT=json


# --- nginx in front of two replicas -------------------------------------------------------------


def render_nginx_site(replicas: list[int], port: int, tmp: Path) -> str:
    """deploy/nginx-mfc.conf with these replica ports, listen port and access log path."""
    site = (DEPLOY / "nginx-mfc.conf").read_text()
    servers = re.findall(r"^    server 10\.0\.0\.\d+:11434(.*);$", site, flags=re.M)
    assert len(servers) == 2, "the example lists two replicas"
    upstream = "".join(f"    server 127.0.0.1:{p}{servers[0]};\n" for p in replicas)
    site = re.sub(r"(^    server 10\.0\.0\.\d+:11434.*;\n)+", upstream, site, flags=re.M)
    site = site.replace("    listen 80;", f"    listen 127.0.0.1:{port};")
    return site.replace("/var/log/nginx/mfc_access.log", str(tmp / "access.log"))


@contextmanager
def nginx(replicas: list[int], tmp: Path) -> Iterator[str]:
    """Debian's nginx in the foreground with the example site as its whole http config."""
    port = free_port()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(parents=True)
        (tmp / sub).chmod(0o777)  # workers run as nobody when the master is root
    (tmp / "mfc.conf").write_text(render_nginx_site(replicas, port, tmp))
    temp_paths = "".join(f"    {sub}_temp_path {tmp / sub};\n" for sub in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    temp_paths = temp_paths.replace("client_body_temp_path " + str(tmp / "client_body"),
                                    "client_body_temp_path " + str(tmp / "body"))  # fmt: skip
    (tmp / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} notice;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n{temp_paths}    include {tmp / 'mfc.conf'};\n}}\n"
    )
    proc = subprocess.Popen([program("nginx"), "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                             "-e", str(tmp / "error.log")])  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/health").status_code == 200, "nginx")
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Outcome:
    request_id: str
    kind: str  # "stream" or "embed"
    started: float
    ended: float
    error: str = ""  # "" when the answer was whole and right


class Load:
    """Client threads sending chat streams and embeds through nginx until stopped."""

    def __init__(self, url: str, chat_model: str, embed_model: str, streams: int, embeds: int):
        self.url = url
        self.chat_model = chat_model
        self.embed_model = embed_model
        self.stop = threading.Event()
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.count = 0
        kinds = ["stream"] * streams + ["embed"] * embeds
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in kinds]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def next_id(self, kind: str) -> str:
        with self.lock:
            self.count += 1
            return f"{kind}-{self.count}"

    def run(self, kind: str) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stop.is_set():
                rid = self.next_id(kind)
                started = time.monotonic()
                try:
                    send = self.stream if kind == "stream" else self.embed
                    error = send(client, rid)
                except httpx.HTTPError as exc:  # refused, reset, incomplete chunked read
                    error = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.outcomes.append(Outcome(rid, kind, started, time.monotonic(), error))

    def stream(self, client: httpx.Client, rid: str) -> str:
        body = {"model": self.chat_model, "messages": [{"role": "user", "content": rid}],
                "options": {"num_predict": 200}}  # fmt: skip
        with client.stream("POST", "/api/chat", json=body, headers={"X-Request-Id": rid}) as r:
            if r.status_code != 200:
                r.read()
                return f"status {r.status_code}: {r.text}"
            lines = [json.loads(line) for line in r.iter_lines() if line]
        if not lines or lines[-1].get("done") is not True:
            return f"truncated: last item {lines[-1] if lines else None}"
        return ""

    def embed(self, client: httpx.Client, rid: str) -> str:
        r = client.post("/api/embed", json={"model": self.embed_model, "input": [rid]},
                        headers={"X-Request-Id": rid})  # fmt: skip
        if r.status_code != 200:
            return f"status {r.status_code}: {r.text}"
        vectors = r.json()["embeddings"]
        return "" if len(vectors) == 1 and len(vectors[0]) == 384 else "wrong answer"

    def between(self, start: float, end: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if start <= o.started and o.ended <= end]


def upstreams(access_log: Path) -> dict[str, list[str]]:
    """Request id -> the replicas nginx tried for it, in order (from the example's log)."""
    out = {}
    for line in access_log.read_text().splitlines():
        rid = re.search(r" rid=(\S+) ", line)
        tried = re.search(r" upstream=(.*?) upstream_status=", line)
        if rid and tried:
            out[rid.group(1)] = [addr.strip() for addr in tried.group(1).split(",")]
    return out


def test_nginx_rolling_restart_then_crash(
    model_store: Path, tiny_llama_model: str, minilm_model: str, tmp_path: Path
) -> None:
    env = {"OLLAMA_NUM_PARALLEL": "2", "MFC_GRACE_PERIOD": "30", "MFC_LOG_FORMAT": "json"}
    args = ("--preload", tiny_llama_model, "--preload", minilm_model)
    a_port, b_port = free_port(), free_port()

    def replica(port: int) -> contextlib.AbstractContextManager[tuple[ServerProcess, Path]]:
        return serve(model_store, *args, env=env, wait_path="/ready", port=port)

    with (
        replica(a_port) as (a, a_log),
        replica(b_port) as (b, _),
        nginx([a_port, b_port], tmp_path / "nginx") as url,
        Load(url, tiny_llama_model, minilm_model, streams=4, embeds=2) as load,
    ):
        # rolling restart: SIGTERM replica A under load, wait for it to exit, start it again
        wait_for(lambda: len(load.outcomes) >= 20, "load to run")
        term_at = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(60) == 0
        with replica(a_port) as (_, a2_log):
            wait_for(lambda: a2_log.read_text().count('"status": 200') >= 5,
                     "traffic on the restarted replica")  # fmt: skip
            restarted_at = time.monotonic()
            rolling = load.between(0, restarted_at)
            # crash: SIGKILL replica B under load
            time.sleep(1)
            kill_at = time.monotonic()
            b.proc.kill()
            b.proc.wait()
            wait_for(lambda: len(load.between(kill_at, time.monotonic())) >= 20, "load after")
            load.stop.set()
    after_kill = [o for o in load.outcomes if o.started >= kill_at]
    during_kill = [o for o in load.outcomes if o.started < kill_at < o.ended]
    tried = upstreams(tmp_path / "nginx" / "access.log")

    # the rolling restart: nothing failed, nothing truncated
    assert rolling and all(o.error == "" for o in rolling), [o for o in rolling if o.error]
    a_lines = [json.loads(line) for line in a_log.read_text().splitlines() if line[:2] == '{"']
    term = next(i for i, line in enumerate(a_lines) if line["msg"].startswith("SIGTERM"))
    drained = [line for line in a_lines[term:] if line["logger"] == "mfc.access"]
    finished = [line for line in drained if line["status"] == 200]
    refused = [line for line in drained if line["status"] == 503]
    assert finished, "no request was in flight on replica A when it was told to stop"
    # the crash: only requests in flight on B failed, each visibly (an exception or status)
    failed = [o for o in load.outcomes if o.error]
    for o in failed:
        assert o.started < kill_at < o.ended, (o, tried.get(o.request_id))
        assert tried[o.request_id][-1] == f"127.0.0.1:{b_port}", (o, tried[o.request_id])
    assert all(o.error == "" for o in after_kill)
    print(f"rolling restart: {len(rolling)} requests, 0 failed; A finished {len(finished)} "
          f"after SIGTERM at {term_at:.1f}, refused {len(refused)} (retried by nginx); "
          f"crash: {len(during_kill)} in flight, {len(failed)} failed "
          f"({[o.error[:60] for o in failed]}), {len(after_kill)} after, 0 failed")  # fmt: skip
