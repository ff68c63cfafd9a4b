"""`mfc run`, `mfc ps`, `mfc stop` against a live server, and `mfc serve`'s own errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from fixtures.local_server import free_port
from tests.runtime.conftest import mfc


def host_of(url: str) -> dict[str, str]:
    hostport = url.removeprefix("http://")
    return {"MFC_HOST": hostport, "OLLAMA_HOST": hostport}


def test_run_ps_stop(server: str, short_demo_model: str) -> None:
    env = host_of(server)
    ran = mfc("run", short_demo_model, "What is 2+2?", env=env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()
    listed = mfc("ps", "--json", env=env)
    assert listed.returncode == 0
    models = json.loads(listed.stdout)["models"]
    assert [m["name"] for m in models] == ["demo-short:latest"]
    table = mfc("ps", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert table[1].startswith("demo-short:latest") and models[0]["digest"][:12] in table[1]
    stopped = mfc("stop", short_demo_model, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(mfc("ps", "--json", env=env).stdout)["models"] == []
    again = mfc("stop", short_demo_model, env=env)
    assert again.returncode == 1 and 'couldn\'t find model "demo-short" to stop' in again.stderr
    answer = json.loads(mfc("run", short_demo_model, "Hi", "--json", env=env).stdout)
    assert answer["done"] and answer["message"]["role"] == "assistant"
    missing = mfc("run", "nope", "hi", env=env)
    assert missing.returncode == 1
    assert "error: model 'nope:latest' not found" in missing.stderr


def test_no_server_and_taken_address(tmp_path: Path) -> None:
    env = host_of(f"http://127.0.0.1:{free_port()}")
    gone = mfc("ps", env=env)
    assert gone.returncode == 1 and "could not connect to the mfc server" in gone.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**host_of(f"http://127.0.0.1:{port}"), "MFC_MODELS": str(tmp_path)}
        refused = mfc("serve", env=env)
    assert refused.returncode == 1
    assert f"error: could not listen on 127.0.0.1:{port}" in refused.stderr
    assert "Traceback" not in refused.stderr
