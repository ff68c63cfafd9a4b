"""Fixtures of the runtime tests: a store with SmolLM2 models, and live `mfc serve` processes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixtures.local_server import ServerStartError, local_server, mfc_command
from runtime.llama import LlamaModel
from tests.conftest import MODELS
from tests.runtime.llama_reference import Reference

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

#: ChatML with Hermes-style tools: the tool list in the system turn, calls as bare JSON
#: (the `.ToolCalls` branch starts with the call's `{`, so the tool-call tag is `{`).
CHATML_TOOLS = """{{- if .Tools }}<|im_start|>system
You can call these tools by answering with JSON {"name": ..., "arguments": {...}}:
{{ range .Tools }}{{ json .Function }}
{{ end }}<|im_end|>
{{ end }}
{{- range .Messages }}
{{- if eq .Role "tool" }}<|im_start|>user
Result of {{ .ToolName }}: {{ .Content }}<|im_end|>
{{ else }}<|im_start|>{{ .Role }}
{{ if .ToolCalls }}
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}
{{ end }}{{ else }}{{ .Content }}{{ end }}<|im_end|>
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


@pytest.fixture(scope="session")
def smollm2_model(smollm2_gguf: Path) -> Iterator[LlamaModel]:
    """SmolLM2-135M Q4_1 loaded once, for tests that run their own engines over it."""
    m = LlamaModel(str(smollm2_gguf))
    yield m
    m.close()


@pytest.fixture(scope="session")
def smollm2_reference(smollm2_gguf: Path) -> Reference:
    """llama-cpp-python over the same GGUF (512 tokens of context)."""
    return Reference(smollm2_gguf, n_ctx=512)


def mfc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*mfc_command(), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)  # fmt: skip


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
def short_demo_model(
    model_store: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """`demo-short`: `demo` with `num_predict 48`, for clients that send no options (`mfc
    run`): at temperature 0.2 SmolLM2 now and then never samples its end token, and the
    10 x num_ctx cap is 20,480 tokens (minutes on 2 cores)."""
    modelfile = DEMO_MODELFILE.format(gguf=smollm2_gguf, template=CHATML)
    build_into(model_store, "demo-short", modelfile + "PARAMETER num_predict 48\n",
               tmp_path_factory.mktemp("demo-short"))  # fmt: skip
    return "demo-short"


@pytest.fixture(scope="session")
def tiny_llama_model(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`tinyllama`: a tiny random-weight llama (a second, different GGUF in the store)."""
    source = MODELS / "tiny-llama"
    if not source.exists():
        pytest.fail(f"fixture {source} is missing: run `make fixtures`")
    build_into(model_store, "tinyllama", f"FROM {source}\n", tmp_path_factory.mktemp("tiny"))
    return "tinyllama"


@contextmanager
def running_server(store: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mfc serve` on a free loopback port, stopped (SIGTERM, then SIGKILL) afterwards."""
    log = (store.parent / f"serve-{os.getpid()}-{time.monotonic_ns()}.log").open("w+")
    try:
        with local_server({"MFC_MODELS": str(store), **(env or {})}, output=log) as url:
            yield url
    except ServerStartError as exc:
        log.seek(0)
        pytest.fail(f"{exc}:\n{log.read()}")
    finally:
        log.close()


@pytest.fixture(scope="module")
def server(model_store: Path) -> Iterator[str]:
    """One server per test module, over the shared store, default settings."""
    with running_server(model_store) as url:
        yield url


@pytest.fixture(scope="session")
def start_server(model_store: Path) -> Callable[..., object]:
    return lambda env=None: running_server(model_store, env)
