"""Prove a model file loads in a throwaway process before the server loads it itself.

Some malformed GGUFs make llama.cpp abort() (a GGML_ASSERT or GGML_ABORT) instead of
returning an error: while loading the model, creating a context, or at the first decode
(fixtures/broken_gguf.py has one of each). The server loads models in its own process, so
such a file would end it and every other request with it. The reference runs each model
in a runner process and answers `llama runner process has terminated: ...` (HTTP 500)
when that one dies; here, before a load, a probe process does what the load will do: the
load, the context, and a short prompt's decode (an embedding model: one embeddings pass),
with the same plan (runtime/load_plan.py). A crash there is the request's error, with the
probe's GGML_ASSERT line or its signal; the server goes on. Probes are forked by a warm
interpreter of their own (runtime/probe_child.py: started once, llama-cpp-python
imported, ~0.15 s less per probe than a fresh interpreter), never by the threaded server.

A verdict is kept per model file (a blob's name is its digest), adapters and the settings
that shape llama.cpp's graph; so a model is probed once, not at each load. A probe holds
no descriptor of the server's, dies with it (the kernel's parent-death signal), may
allocate no more than the machine's memory, dumps no core, and is killed after
OLLAMA_LOAD_TIMEOUT. It runs on the scheduler's loading thread, never the event loop.

Not covered: an abort that only some prompts reach at decode time (a token id past a
tensor's rows, a long prompt's graph), and projectors, which load at the first image.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from runtime.errors import ModelLoadError
from runtime.load_plan import LoadRequest

log = logging.getLogger("mfc.serve")

#: the tail of the child's stderr read back for its last error line (llama.cpp may warn
#: once per token of a vocabulary: the file it writes is not read whole)
STDERR_TAIL = 64 << 10
#: verdicts kept (passes, and crashes a second probe would repeat)
MAX_VERDICTS = 1024
#: signals a malformed file causes every time (abort, bad memory access, ...), not the OOM
#: killer's or an operator's SIGKILL
CRASH_SIGNALS = (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL)
#: `<source file>:<line>: <message>`, how ggml_abort reports a failed GGML_ASSERT/GGML_ABORT
_ABORT_LINE = re.compile(r"^\S+\.(?:c|cc|cpp|h|hpp):\d+: (.+)$")


def verdict_key(req: LoadRequest) -> LoadRequest:
    """The part of a load a verdict holds for: not threads, mmap or the embedding layout
    (they change how fast llama.cpp computes, not what it builds)."""
    return dataclasses.replace(
        req, use_mmap=None, num_thread=0, server_threads=0, embed_contexts=None
    )


def exit_description(returncode: int) -> str:
    """How Go's os.ProcessState describes an exit (`signal: aborted`, `exit status 1`)."""
    if returncode < 0:
        try:
            name = signal.strsignal(-returncode) or f"signal {-returncode}"
        except ValueError:
            name = f"signal {-returncode}"
        return f"signal: {name[:1].lower()}{name[1:]}"
    return f"exit status {returncode}"


def last_error(stderr: str) -> str:
    """The child's last error line, as the reference's runner status writer picks it: from
    a GGML_ASSERT or a llama.cpp `error loading model` to the end of its line."""
    found = ""
    for line in stderr.splitlines():
        line = line.strip()
        if (match := _ABORT_LINE.match(line)) is not None:
            found = match.group(1)
        elif "GGML_ASSERT" in line:
            found = line[line.index("GGML_ASSERT") :]
        elif "error loading model" in line:
            found = line[line.index("error loading model") :]
    return found


class LoadProbe:
    """Runs and remembers load probes; `check` is called from loading threads."""

    def __init__(self, timeout: float = math.inf) -> None:
        self.timeout = timeout
        self.results: collections.Counter[str] = collections.Counter()  # probes run, by result
        self._verdicts: dict[LoadRequest, str | None] = {}  # None: it loads
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()  # one probe at a time through the zygote
        self._stopped = False

    def check(self, req: LoadRequest) -> None:
        """Return once `req`'s load is known to leave the process alive; ModelLoadError
        (HTTP 500) with the child's reason otherwise."""
        key = verdict_key(req)
        with self._lock:
            if key in self._verdicts:
                known = self._verdicts[key]
                if known is None:
                    return
                raise ModelLoadError(known)
        result, message, lasting = self._run(req)
        if message:
            log.warning("%s: load probe %s: %s", req.model_path, result, message)
        with self._lock:
            self.results[result] += 1
            if lasting:
                if len(self._verdicts) >= MAX_VERDICTS:
                    self._verdicts.clear()
                self._verdicts[key] = message or None
        if message:
            raise ModelLoadError(message)

    def warm(self) -> None:
        """Start the zygote now (it imports llama-cpp-python, ~0.2 s), so that the first
        model load does not wait for it. Call from a thread that lives as long as the
        server: the zygote's parent-death signal fires when the thread that made it ends."""
        with self._zygote_lock, self._lock:
            if self._zygote is None and not self._stopped:
                self._zygote = Zygote()

    def stop(self) -> None:
        """Kill the probes running now and refuse new ones (the server is stopping)."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
            zygote, self._zygote = self._zygote, None
        for proc in running:
            proc.kill()
        if zygote is not None:
            zygote.stop()

    def _run(self, req: LoadRequest) -> tuple[str, str, bool]:
        """(result, error message or "", whether the verdict holds for the next load)."""
        job: dict[str, Any] = {
            "load": dataclasses.asdict(req), "parent": os.getpid(), "data": _data_limit(req)
        }  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="mfc-probe-") as tmp:
            out, err = Path(tmp, "out"), Path(tmp, "err")
            out.touch()
            err.touch()
            job |= {"stdout": str(out), "stderr": str(err)}
            returncode = self._execute(job)
            if returncode is None:
                message = f"timed out waiting for llama runner to start - {last_error(_tail(err))}"
                return "timeout", message.rstrip(" -"), False
            if self._stopped and returncode != 0:
                return "stopped", "the server is shutting down", False
            if returncode == 0:
                verdict = _verdict(out)
                error = verdict.get("error")
                if isinstance(error, str):  # llama.cpp refused it: the load's own error
                    return "refused", error, False
                if verdict.get("ok") is True:
                    return "passed", "", True
            if returncode > 0:  # the probe's Python failed, not llama.cpp: load as before
                log.warning("load probe of %s failed (%s): %s", req.model_path,
                            exit_description(returncode), _tail(err)[-2000:])  # fmt: skip
                return "failed", "", False
            reason = last_error(_tail(err)) or exit_description(returncode)
            lasting = returncode in [-s for s in CRASH_SIGNALS]
            return "crashed", f"llama runner process has terminated: {reason}", lasting

    def _execute(self, job: dict[str, Any]) -> int | None:
        """Run `job` in a probe process: its exit code (negative: a signal), or None if it
        ran out of time. The zygote forks it; a fresh interpreter runs it without one."""
        timeout = None if math.isinf(self.timeout) else self.timeout
        with self._zygote_lock:
            try:
                with self._lock:
                    if self._stopped:
                        return -signal.SIGKILL
                    if self._zygote is None or not self._zygote.alive():
                        self._zygote = Zygote()
                    zygote = self._zygote
                return zygote.run(job, timeout)
            except (OSError, EOFError, ValueError, KeyError) as exc:
                log.warning("load probe zygote failed (%s); probing in a new interpreter", exc)
                with self._lock:
                    if self._zygote is not None:
                        self._zygote.stop()
                        self._zygote = None
        return self._one_shot(job, timeout)

    def _one_shot(self, job: dict[str, Any], timeout: float | None) -> int | None:
        with Path(job["stdout"]).open("ab") as out, Path(job["stderr"]).open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.probe_child"],
                stdin=subprocess.PIPE, stdout=out, stderr=err, env=_child_env(),
            )  # fmt: skip
        with self._lock:
            self._running.add(proc)
            if self._stopped:
                proc.kill()
        try:
            proc.communicate(json.dumps(job).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
        finally:
            with self._lock:
                self._running.discard(proc)
        return proc.returncode


class Zygote:
    """The warm probe forker (runtime/probe_child.py), one job at a time."""

    def __init__(self) -> None:
        env = {**_child_env(), "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.probe_child", "--zygote", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0,
        )  # fmt: skip
        self._buf = b""
        self.child = 0  # the probe running now

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: dict[str, Any], timeout: float | None) -> int | None:
        """The probe's exit code, or None once `timeout` has passed (the probe is killed,
        and this zygote too: what it would say next no longer answers anything)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.child = int(self._line(deadline)["pid"])
            return int(self._line(deadline)["status"])
        except TimeoutError:
            self.stop()
            return None
        finally:
            self.child = 0

    def _line(self, deadline: float | None) -> dict[str, Any]:
        """The zygote's next line; TimeoutError at `deadline`, EOFError if it is gone."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            if deadline is not None:
                ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError("the load probe zygote exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ValueError(f"the load probe zygote said {line!r}")
        return answer

    def stop(self) -> None:
        if self.child:
            with contextlib.suppress(OSError):
                os.kill(self.child, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _tail(path: Path) -> str:
    """The end of a probe's output file (llama.cpp may warn once per vocabulary token)."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - STDERR_TAIL, 0))
        return f.read().decode("utf-8", errors="replace")


def _verdict(out: Path) -> dict[str, Any]:
    """The probe's verdict line (the last JSON object it wrote: llama.cpp may write too)."""
    for line in reversed(_tail(out).splitlines()):
        try:
            verdict = json.loads(line)
        except ValueError:
            continue
        if isinstance(verdict, dict):
            return verdict
    return {}


def _child_env() -> dict[str, str]:
    """The server's environment, with this checkout's packages first on the path (an
    editable install may point elsewhere) and ggml's backtrace off: it attaches gdb to the
    dying process, seconds for a message nobody reads."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        "GGML_NO_BACKTRACE": "1",
    }


def _data_limit(req: LoadRequest) -> int:
    """Bytes of private memory the child may map: the machine's memory, plus the files it
    reads into memory when not mapping them (a file mapped read-only does not count)."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0
    files = 0
    for path in (req.model_path, *req.adapter_paths):
        with contextlib.suppress(OSError):
            files += Path(path).stat().st_size
    return int(ram + files)
