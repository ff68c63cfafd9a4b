"""What survives a signal: `mfc quantize`, `build`, `convert` and `serve` + a quantizing
`/api/create`, each stopped with SIGTERM or SIGKILL while its workers are busy.

Nothing may outlive the command: no process (found by a tag in its environment, which
worker processes inherit even after their parent is gone, read from /proc), no listening
socket, no temp file. SIGTERM cleans up as Ctrl-C does and exits 143 (`mfc serve` drains
and exits 0). The next run works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Generator
from pathlib import Path

import httpx
import pytest

from fixtures.local_server import ROOT, free_port, mfc_command
from toolchain.cli import EXIT_TERMINATED

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
F32 = CACHE / "models" / "smollm2-f32" / "SmolLM2-135M-F32.gguf"
HF_DIR = CACHE / "models" / "smollm2-hf"
TAG = "MFC_TEST_PROCESS_TAG"


@pytest.fixture(scope="module")
def f32_gguf() -> Path:
    if not F32.is_file():
        pytest.fail(f"fixture {F32} is missing: run `make fixtures`")
    return F32


def tagged_env(tag: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), TAG: tag, **extra}


def tagged_processes(tag: str) -> list[int]:
    """Live (not zombie) processes whose environment carries `tag`."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def survivors(tag: str, timeout: float = 20.0) -> list[str]:
    """Tagged processes still there after waiting up to `timeout` for them to go."""
    deadline = time.monotonic() + timeout
    while (pids := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    out = []
    for pid in pids:
        try:
            out.append(
                f"{pid}: "
                + Path(f"/proc/{pid}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
    return out


def listening(port: int) -> bool:
    """Whether any socket on this machine listens on TCP `port` (/proc/net/tcp{,6})."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def start(args: list[str], tag: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*mfc_command(), *args],
        env=tagged_env(tag, **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_mfc(args: list[str], tag: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mfc_command(), *args],
        env=tagged_env(tag),
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for_status(proc: subprocess.Popen[str], prefix: str, *, count: int = 1) -> None:
    """Read `--json` lines until `count` of them have a status starting with `prefix`."""
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if json.loads(line).get("status", "").startswith(prefix):
            seen += 1
            if seen >= count:
                return
    err = proc.stderr.read() if proc.stderr else ""
    pytest.fail(f"exited ({proc.wait()}) before {prefix!r}: {err}")


def stop(proc: subprocess.Popen[str], sig: signal.Signals, tag: str) -> int:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # it, or a child holding its pipes, is still there
        proc.kill()
        proc.wait()
        pytest.fail(f"output still open 60 s after {sig.name}: {survivors(tag, 0)}")
    assert "Traceback" not in err, err
    return proc.returncode


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- mfc quantize ------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_quantize_stopped_mid_way(tmp_path: Path, f32_gguf: Path, sig: signal.Signals) -> None:
    tag = uuid.uuid4().hex
    out = tmp_path / "out" / "model-q4.gguf"
    out.parent.mkdir()
    args = ["quantize", str(f32_gguf), str(out), "q4_K_M", "--threads", "2", "--json"]
    proc = start(args, tag)
    wait_for_status(proc, "quantizing", count=3)  # workers are busy, the temp file is there
    assert len(tagged_processes(tag)) >= 2  # mfc and the worker it forked (it is the other)
    code = stop(proc, sig, tag)
    assert code == (EXIT_TERMINATED if sig == signal.SIGTERM else -signal.SIGKILL)
    assert survivors(tag) == []
    if sig == signal.SIGTERM:
        assert files_in(out.parent) == []  # the partial output went with the process
    # a killed run's temp file is removed by the next run (its owner is dead)
    done = run_mfc(["quantize", str(f32_gguf), str(out), "q8_0", "--json"], tag)
    assert done.returncode == 0, done.stderr
    assert files_in(out.parent) == [out.name]
    assert survivors(tag) == []


def test_quantize_worker_killed(tmp_path: Path, f32_gguf: Path) -> None:
    """A worker killed under the command (the OOM killer, an operator): a clear error."""
    tag = uuid.uuid4().hex
    out = tmp_path / "out" / "model-q4.gguf"
    out.parent.mkdir()
    proc = start(["quantize", str(f32_gguf), str(out), "q4_K_M", "--threads", "2", "--json"], tag)
    wait_for_status(proc, "quantizing", count=3)
    tagged = tagged_processes(tag)
    parents = {parent(pid) for pid in tagged}
    # the workers: forked from the command itself (or a fork server's children)
    workers = [pid for pid in tagged if pid != proc.pid and pid not in parents]
    assert workers
    os.kill(workers[0], signal.SIGTERM)  # workers no longer ignore SIGTERM
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "a quantize worker process died" in err
    assert survivors(tag) == []
    assert files_in(out.parent) == []


# -- mfc build (QUANTIZE) ----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_build_quantize_stopped_mid_way(
    tmp_path: Path, f32_gguf: Path, sig: signal.Signals
) -> None:
    tag = uuid.uuid4().hex
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {f32_gguf}\nQUANTIZE q4_K_M\n")
    store = tmp_path / "models"
    args = ["build", str(modelfile), "-t", "q", "--models", str(store), "--json"]
    proc = start(args, tag)
    wait_for_status(proc, "quantizing", count=3)
    code = stop(proc, sig, tag)
    assert code == (EXIT_TERMINATED if sig == signal.SIGTERM else -signal.SIGKILL)
    assert survivors(tag) == []
    if sig == signal.SIGTERM:
        assert files_in(store / ".mfc" / "tmp") == []
    done = run_mfc(args, tag)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["model"] == "q:latest"
    assert files_in(store / ".mfc" / "tmp") == []
    assert survivors(tag) == []


# -- mfc convert -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_convert_stopped_mid_way(tmp_path: Path, sig: signal.Signals) -> None:
    if not (HF_DIR / "model.safetensors").is_file():
        pytest.fail(f"fixture {HF_DIR} is missing: run `make fixtures`")
    tag = uuid.uuid4().hex
    out = tmp_path / "out" / "smollm2.gguf"
    out.parent.mkdir()
    args = ["convert", str(HF_DIR), str(out), "--outtype", "q8_0", "--json"]
    proc = start(args, tag)
    wait_for_status(proc, "converting", count=2)
    code = stop(proc, sig, tag)
    assert code == (EXIT_TERMINATED if sig == signal.SIGTERM else -signal.SIGKILL)
    assert survivors(tag) == []
    if sig == signal.SIGTERM:
        assert files_in(out.parent) == []
    done = run_mfc(args, tag)
    assert done.returncode == 0, done.stderr
    assert files_in(out.parent) == [out.name]


# -- mfc serve + a quantizing /api/create ------------------------------------------------


@pytest.fixture(scope="module")
def f32_store(tmp_path_factory: pytest.TempPathFactory, f32_gguf: Path) -> Path:
    """A store holding the F32 model as `f32` (so a create can quantize it)."""
    store = tmp_path_factory.mktemp("serve") / "models"
    modelfile = store.parent / "Modelfile"
    modelfile.write_text(f"FROM {f32_gguf}\n")
    done = run_mfc(["build", str(modelfile), "-t", "f32", "--models", str(store)], "setup")
    assert done.returncode == 0, done.stderr
    return store


def serve(store: Path, port: int, tag: str) -> subprocess.Popen[str]:
    host = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*mfc_command(), "serve"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=tagged_env(tag, MFC_MODELS=str(store), MFC_HOST=host, OLLAMA_HOST=host),
    )
    for _ in range(300):
        if proc.poll() is not None:
            pytest.fail(
                f"mfc serve exited with {proc.returncode}: "
                f"{proc.stderr.read() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://{host}/", timeout=1).status_code == 200:
                time.sleep(0.2)
                assert proc.poll() is None, "another server answered on our port"
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("mfc serve did not answer within 30 s")


def create_events(port: int, body: dict[str, object]) -> Generator[dict[str, object], None, None]:
    with httpx.stream(
        "POST",
        f"http://127.0.0.1:{port}/api/create",
        json=body,
        timeout=httpx.Timeout(10, read=600),
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line:
                yield json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_serve_stopped_while_a_create_quantizes(f32_store: Path, sig: signal.Signals) -> None:
    tag = uuid.uuid4().hex
    port = free_port()
    proc = serve(f32_store, port, tag)
    try:
        seen = 0
        events = create_events(port, {"model": "q", "from": "f32", "quantize": "q4_K_M"})
        try:
            for event in events:
                if str(event.get("status", "")).startswith("quantizing"):
                    seen += 1
                    if seen == 3:
                        break
            assert seen == 3
            assert len(tagged_processes(tag)) >= 3  # server, fork server, workers
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            events.close()
        assert survivors(tag) == []
        assert not listening(port)
        assert files_in(f32_store / ".mfc" / "tmp") == [] or sig == signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the same port serves again, and a create there works (and clears what was left)
    again = serve(f32_store, port, tag)
    try:
        last = list(create_events(port, {"model": "q", "from": "f32", "quantize": "q8_0"}))[-1]
        assert last == {"status": "success"}
        assert files_in(f32_store / ".mfc" / "tmp") == []
    finally:
        again.terminate()
        assert again.wait(timeout=60) == 0  # serve drains on SIGTERM, then exits 0
    assert survivors(tag) == []
    assert not listening(port)


def test_a_create_whose_client_left_stops(f32_store: Path) -> None:
    tag = uuid.uuid4().hex
    port = free_port()
    proc = serve(f32_store, port, tag)
    try:
        events = create_events(port, {"model": "abandoned", "from": "f32", "quantize": "q4_K_M"})
        seen = 0
        for event in events:
            if str(event.get("status", "")).startswith("quantizing"):
                seen += 1
                if seen == 3:
                    break
        events.close()  # the client goes away mid-quantization

        def workers() -> list[int]:  # the server's grandchildren: quantize workers
            return [p for p in tagged_processes(tag) if p != proc.pid and parent(p) != proc.pid]

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (workers() or files_in(f32_store / ".mfc" / "tmp")):
            time.sleep(0.2)
        assert files_in(f32_store / ".mfc" / "tmp") == []  # the build unwound
        assert workers() == []  # the fork server and resource tracker may stay, idle
        names = httpx.get(f"http://127.0.0.1:{port}/api/tags").json()["models"]
        assert "abandoned:latest" not in [m["name"] for m in names]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert survivors(tag) == []
