"""/api/pull and /api/push of `mfc serve`, driven by the official `ollama` Python client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from fixtures.local_server import free_port
from tests.toolchain.registry.fault_proxy import FaultProxy
from tests.toolchain.registry.models import snapshot, store_model
from toolchain.store import Store


@pytest.fixture
def server(store: Store) -> Iterator[str]:
    """`mfc serve` over `store` on a free loopback port (stopped at the end)."""
    from runtime.config import ServerConfig
    from runtime.server import make_server

    config = ServerConfig(host="127.0.0.1", port=free_port())
    uv = make_server(config, store)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started, "the server did not start"
    try:
        yield config.base_url
    finally:
        uv.should_exit = True
        thread.join(15)


def test_ollama_client_push_and_pull_through_the_server(
    server: str, proxy: FaultProxy, store: Store, small_gguf: Path
) -> None:
    client = ollama.Client(host=server)
    name = f"{proxy.host}/team/served:v1"
    manifest = store_model(store, name, small_gguf, system="Served.")
    before = snapshot(store)

    pushed = list(client.push(name, insecure=True, stream=True))
    assert pushed[0].status == "retrieving manifest"
    assert pushed[-1].status == "success"
    model = manifest.layers[0]
    layer = [p for p in pushed if p.digest == model.digest]
    assert layer[0].status == f"pushing {model.digest[7:19]}"
    assert layer[-1].completed == layer[-1].total == model.size

    store.delete(name)
    final = client.pull(name, insecure=True, stream=False)  # one object: the last event
    assert final.status == "success"
    assert snapshot(store) == before

    again = list(client.pull(name, insecure=True, stream=True))
    statuses = [p.status for p in again]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    cached = [p for p in again if p.digest == model.digest]
    assert len(cached) == 1 and cached[0].completed == cached[0].total == model.size


def test_server_errors_follow_the_reference(server: str, proxy: FaultProxy) -> None:
    client = ollama.Client(host=server)
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull(f"{proxy.host}/team/missing:v1", insecure=True, stream=False)
    assert caught.value.status_code == 500
    assert "file does not exist" in caught.value.error

    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.pull(f"{proxy.host}/team/missing:v1", insecure=True, stream=True))
    assert streamed.value.status_code == -1  # an {"error"} line after the stream started

    invalid = httpx.post(f"{server}/api/pull", json={"model": "bad name!"})
    assert (invalid.status_code, invalid.json()) == (400, {"error": "invalid model name"})
    required = httpx.post(f"{server}/api/push", json={"model": ""})
    assert (required.status_code, required.json()) == (400, {"error": "model is required"})
    lines = httpx.post(
        f"{server}/api/push", json={"model": f"{proxy.host}/team/absent:v1", "insecure": True}
    )
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    body = [line for line in lines.text.splitlines() if line]
    assert body[0] == '{"status":"retrieving manifest"}'
    assert "not found" in body[-1] and body[-1].startswith('{"error":')
