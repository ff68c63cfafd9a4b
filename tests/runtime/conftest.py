"""Fixtures of the runtime tests: a store with SmolLM2 models, and live `mfc serve` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS

ROOT = Path(__file__).resolve().parents[2]

#: ChatML as SmolLM2 was trained on it (the demo Modelfile's template).
CHATML = """{{- range $i, $m := .Messages }}
{{- if eq $m.Role "system" }}<|im_start|>system
{{ $m.Content }}<|im_end|>
{{ else if eq $m.Role "user" }}<|im_start|>user
{{ $m.Content }}<|im_end|>
{{ else if eq $m.Role "assistant" }}<|im_start|>assistant
{{ $m.Content }}<|im_end|>
{{ end }}
{{- end }}<|im_start|>assistant
"""

#: ChatML with Hermes-style tools: the tool list in the system turn, calls as bare JSON.
CHATML_TOOLS = """{{- if .Tools }}<|im_start|>system
You can call these tools by answering with JSON {"name": ..., "arguments": {...}}:
{{ range .Tools }}{{ json .Function }}
{{ end }}<|im_end|>
{{ end }}
{{- range .Messages }}
{{- if eq .Role "tool" }}<|im_start|>user
Result of {{ .ToolName }}: {{ .Content }}<|im_end|>
{{ else if .ToolCalls }}<|im_start|>assistant
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{ end }}<|im_end|>
{{ else }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}
{{- end }}<|im_start|>assistant
"""

DEMO_MODELFILE = '''FROM {gguf}
TEMPLATE """{template}"""
SYSTEM "You are a concise assistant. Answer in one or two sentences."
PARAMETER temperature 0.2
PARAMETER top_k 40
PARAMETER num_ctx 2048
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
'''


def mfc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mfc"
    argv = (
        [str(exe), *args]
        if exe.exists()
        else [sys.executable, "-c", "from toolchain.cli import main; main()", *args]
    )
    return subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Path:
    """A store holding `demo` (SmolLM2 + ChatML + system + params), built with `mfc build`."""
    root = tmp_path_factory.mktemp("store")
    folder = tmp_path_factory.mktemp("demo")
    (folder / "Modelfile").write_text(DEMO_MODELFILE.format(gguf=smollm2_gguf, template=CHATML))
    result = mfc("build", str(folder / "Modelfile"), "-t", "demo", env={"MFC_MODELS": str(root)})
    assert result.returncode == 0, result.stderr
    return root


def build_into(store: Path, name: str, modelfile: str, tmp: Path) -> None:
    (tmp / "Modelfile").write_text(modelfile)
    result = mfc("build", str(tmp / "Modelfile"), "-t", name, env={"MFC_MODELS": str(store)})
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def minilm_model(
    model_store: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """`minilm`: all-MiniLM-L6-v2 converted by `mfc build` (a BERT embedding model)."""
    build_into(model_store, "minilm", f"FROM {minilm_dir}\n", tmp_path_factory.mktemp("minilm"))
    return "minilm"


@pytest.fixture(scope="session")
def tiny_llama_model(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`tinyllama`: a tiny random-weight llama (a second, different GGUF in the store)."""
    source = MODELS / "tiny-llama"
    if not source.exists():
        pytest.fail(f"fixture {source} is missing: run `make fixtures`")
    build_into(model_store, "tinyllama", f"FROM {source}\n", tmp_path_factory.mktemp("tiny"))
    return "tinyllama"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(store: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mfc serve` on a free loopback port, stopped (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    full_env = {
        **os.environ,
        "MFC_MODELS": str(store),
        "MFC_HOST": f"127.0.0.1:{port}",
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        **(env or {}),
    }
    exe = Path(sys.executable).parent / "mfc"
    argv = (
        [str(exe), "serve"]
        if exe.exists()
        else [sys.executable, "-c", "from toolchain.cli import main; main()", "serve"]
    )
    log = (store.parent / f"serve-{port}.log").open("w+")
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"mfc serve exited with {proc.returncode}:\n{log.read()}")
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("mfc serve did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(model_store: Path) -> Iterator[str]:
    """One server per test module, over the shared store, default settings."""
    with running_server(model_store) as url:
        yield url


@pytest.fixture(scope="session")
def start_server(model_store: Path) -> Callable[..., object]:
    return lambda env=None: running_server(model_store, env)
