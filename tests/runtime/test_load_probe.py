"""A model file that makes llama.cpp abort must not take `mfc serve` down.

fixtures/broken_gguf.py makes, from SmolLM2-135M and all-MiniLM-L6-v2, GGUFs that make
llama.cpp call abort() while loading the model, creating its context, or at the first
decode. The reference (Ollama) loads each model in a runner process and answers `llama
runner process has terminated: <its error line>` (HTTP 500) when that one dies; the server
here proves each file in a child process first (runtime/load_probe.py). Without that, the
first request for one of these files kills the server (MFC_LOAD_PROBE=0 shows it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures.broken_gguf import ABORTS, CLEAN, Mutation, make
from fixtures.local_server import ServerProcess, server_process
from runtime.errors import ModelLoadError
from runtime.load_plan import LoadRequest
from runtime.load_probe import LoadProbe, Zygote, exit_description, last_error
from tests.runtime.conftest import build_into, mfc

TERMINATED = "llama runner process has terminated: GGML_ASSERT("

#: llama.cpp's stages for a file, in a plain process that prints each before it starts it
STAGES = """
import sys
import llama_cpp as lc
from runtime.llama import POOLING, ContextSettings, LlamaModel
print("load", flush=True)
model = LlamaModel(sys.argv[1])
embed = model.pooling_type is not None
settings = ContextSettings(n_ctx=512, n_batch=512, n_ubatch=512, embeddings=embed,
                           pooling=POOLING[model.pooling_type or "mean"])
tokens = model.tokenize("Hello")
print("context", flush=True)
ctx = model.new_context(settings)
print("decode", flush=True)
batch = lc.llama_batch_get_one((lc.llama_token * len(tokens))(*tokens), len(tokens))
(lc.llama_encode if model.has_encoder and not model.has_decoder else lc.llama_decode)(ctx, batch)
print("survived", flush=True)
"""


@pytest.fixture(scope="module")
def sources(
    smollm2_gguf: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    minilm = folder / "minilm.gguf"
    result = mfc("convert", str(minilm_dir), str(minilm))
    assert result.returncode == 0, result.stderr
    return {"smollm2": smollm2_gguf, "minilm": minilm}


@pytest.fixture(scope="module")
def broken(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each mutation's file, by mutation name."""
    folder = tmp_path_factory.mktemp("broken")
    return {m.name: make(m, sources[m.base], folder) for m in (*ABORTS, *CLEAN)}


@pytest.mark.parametrize("mutation", ABORTS, ids=lambda m: m.name)
def test_files_abort_llama_cpp_at_their_stage(mutation: Mutation, broken: dict[str, Path]) -> None:
    """The reproduction: in a plain process, each file ends it with SIGABRT at its stage
    (this is what ends a server that loads it in-process)."""
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}
    child = subprocess.run([sys.executable, "-c", STAGES, str(broken[mutation.name])],
                           capture_output=True, text=True, env=env, check=False)  # fmt: skip
    assert child.returncode == -signal.SIGABRT, child.stdout + child.stderr
    assert child.stdout.split()[-1] == mutation.stage
    assert "GGML_ASSERT(" in child.stderr


@pytest.mark.parametrize("mutation", CLEAN, ids=lambda m: m.name)
def test_other_inconsistencies_fail_cleanly(mutation: Mutation, broken: dict[str, Path]) -> None:
    child = subprocess.run([sys.executable, "-c", STAGES, str(broken[mutation.name])],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert child.returncode == 1  # a Python exception: llama.cpp returned an error
    assert "ModelLoadError" in child.stderr


@pytest.fixture(scope="module")
def store(
    broken: dict[str, Path], sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A store with `good` (SmolLM2), `good-copy` (its blob under another name), `minilm`,
    and one model per broken file, named after it."""
    root = tmp_path_factory.mktemp("probe-store")
    tmp = tmp_path_factory.mktemp("modelfiles")
    build_into(root, "good", f"FROM {sources['smollm2']}\n", tmp)
    build_into(root, "good-copy", "FROM good\nSYSTEM another\n", tmp)
    build_into(root, "minilm", f"FROM {sources['minilm']}\n", tmp)
    for name, path in broken.items():
        build_into(root, name, f"FROM {path}\n", tmp)
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    with (
        (store.parent / "serve.log").open("w") as log,
        server_process({"MFC_MODELS": str(store)}, output=log) as proc,
    ):
        yield proc


@pytest.fixture(scope="module")
def url(server: ServerProcess) -> str:
    return server.url


def _probes(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for s in family.samples:
            if s.name == "mfc_model_load_probes_total":
                out[s.labels["result"]] = s.value
    return out


def _ask(url: str, model: str, base: str, keep_alive: int | None = None) -> httpx.Response:
    body: dict[str, object] = {"model": model}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if base == "minilm":
        return httpx.post(url + "/api/embed", json={**body, "input": "Hello"}, timeout=120)
    body |= {"prompt": "Hello", "stream": False, "options": {"num_predict": 2}}
    return httpx.post(url + "/api/generate", json=body, timeout=120)


@pytest.mark.parametrize("mutation", ABORTS, ids=lambda m: m.name)
def test_aborting_file_is_an_error_and_the_server_lives(
    mutation: Mutation, server: ServerProcess
) -> None:
    url = server.url
    r = _ask(url, mutation.name, mutation.base)
    assert r.status_code == 500, r.text
    assert r.json()["error"].startswith(TERMINATED), r.text
    assert server.proc.poll() is None
    ok = _ask(url, "good", "smollm2")
    assert ok.status_code == 200, ok.text
    assert ok.json()["done"] is True


def test_clean_failure_keeps_llama_cpp_message(url: str) -> None:
    r = _ask(url, "odd-head-count", "smollm2")
    assert r.status_code == 500
    assert r.json()["error"].startswith("unable to load model: ")


def test_a_file_is_probed_once(url: str) -> None:
    """A passing verdict holds for the blob's later loads (under any name), a crash's for
    the later requests of its model."""
    r = _ask(url, "good", "smollm2", keep_alive=0)  # probed (now or before), then unloaded
    assert r.status_code == 200, r.text
    assert _ask(url, "no-layers", "smollm2").status_code == 500
    before = _probes(url)
    assert before.get("passed", 0) >= 1 and before.get("crashed", 0) >= 1
    for name in ("good", "good-copy", "good"):
        r = _ask(url, name, "smollm2", keep_alive=0)  # loaded again, not probed again
        assert r.status_code == 200, r.text
        assert _ask(url, "no-layers", "smollm2").status_code == 500
    assert _probes(url) == before


def test_server_without_probe_dies(store: Path) -> None:
    """What the probe prevents: with MFC_LOAD_PROBE=0 the first request ends the server."""
    with (
        (store.parent / "serve-noprobe.log").open("w") as log,
        server_process(
            {"MFC_MODELS": str(store), "MFC_LOAD_PROBE": "0", "GGML_NO_BACKTRACE": "1"}, output=log
        ) as proc,
    ):
        with pytest.raises(httpx.TransportError):
            _ask(proc.url, "no-layers", "smollm2")
        assert proc.proc.wait(timeout=30) == -signal.SIGABRT


def test_probe_is_bounded_in_time(smollm2_gguf: Path) -> None:
    """A probe over OLLAMA_LOAD_TIMEOUT is killed and the load fails; nothing is kept."""
    req = LoadRequest(str(smollm2_gguf), (), None, 512, 512, 0, 0, 1, None, "f16", None)
    probe = LoadProbe(timeout=0.01)
    for _ in range(2):
        with pytest.raises(ModelLoadError, match=r"^timed out waiting for llama runner to start"):
            probe.check(req)
    assert probe.results == {"timeout": 2}
    assert not probe._running


def test_reason_is_the_assertion_else_the_signal() -> None:
    """As the reference's runner status writer: from GGML_ASSERT to the end of its line."""
    stderr = "llama_model_loader: meta\n/src/llama-model.cpp:1328: GGML_ASSERT(x > 0) failed\n"
    assert last_error(stderr) == "GGML_ASSERT(x > 0) failed"
    assert last_error("nothing to see\n") == ""
    assert exit_description(-signal.SIGABRT) == "signal: aborted"
    assert exit_description(-signal.SIGSEGV) == "signal: segmentation fault"
    assert exit_description(2) == "exit status 2"


def test_probes_fork_from_one_zygote_which_comes_back(
    smollm2_gguf: Path, broken: dict[str, Path]
) -> None:
    """Probes are forked by one warm interpreter; if it goes (killed), the next probe starts
    another; `stop` ends it."""

    def req(path: Path) -> LoadRequest:
        return LoadRequest(str(path), (), None, 512, 512, 0, 0, 1, None, "f16", None)

    probe = LoadProbe(timeout=120)
    probe.check(req(smollm2_gguf))
    with pytest.raises(ModelLoadError, match=re.escape(TERMINATED)):
        probe.check(req(broken["no-layers"]))
    zygote = probe._zygote
    assert zygote is not None and zygote.alive()
    with pytest.raises(ModelLoadError, match=re.escape(TERMINATED)):
        probe.check(req(broken["one-expert"]))
    assert probe._zygote is zygote  # a crash is the probe's, not the zygote's
    zygote.proc.kill()
    zygote.proc.wait()
    with pytest.raises(ModelLoadError, match=re.escape(TERMINATED)):
        probe.check(req(broken["unknown-rope-scaling"]))
    assert probe._zygote is not None and probe._zygote is not zygote
    assert probe.results == {"passed": 1, "crashed": 3}
    again = probe._zygote
    probe.stop()
    assert again.proc.poll() is not None
    with pytest.raises(ModelLoadError, match="shutting down"):
        probe.check(req(broken["duplicate-token"]))


def test_without_a_zygote_a_fresh_interpreter_probes(
    smollm2_gguf: Path, broken: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback when the zygote cannot serve: the same verdicts, from `python -m`."""

    def gone(self: Zygote, job: object, timeout: object) -> int:
        raise EOFError("the load probe zygote exited")

    monkeypatch.setattr(Zygote, "run", gone)
    probe = LoadProbe(timeout=120)
    for path in (smollm2_gguf, broken["negative-rms-eps"]):
        req = LoadRequest(str(path), (), None, 512, 512, 0, 0, 1, None, "f16", None)
        if path == smollm2_gguf:
            probe.check(req)
        else:
            with pytest.raises(ModelLoadError, match=re.escape(TERMINATED + "eps >= 0.0f)")):
                probe.check(req)
    assert probe.results == {"passed": 1, "crashed": 1}
