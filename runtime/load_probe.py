"""Prove a model file loads in a throwaway process before the server loads it itself.

Some malformed GGUFs make llama.cpp abort() (a GGML_ASSERT or GGML_ABORT) instead of
returning an error: while loading the model, creating a context, or at the first decode
(fixtures/broken_gguf.py has one of each). The server loads models in its own process, so
such a file would end it and every other request with it. The reference runs each model
in a runner process and answers `llama runner process has terminated: ...` (HTTP 500)
when that one dies; here, before a load, a fresh interpreter (`python -m
runtime.load_probe`, never a fork of the threaded server) does what the load will do: the
load, the context, and a short prompt's decode (an embedding model: one embeddings pass),
with the same plan (runtime/load_plan.py). A crash there is the request's error, with the
child's GGML_ASSERT line or its signal; the server goes on.

A verdict is kept per model file (a blob's name is its digest), adapters and the settings
that shape llama.cpp's graph; so a model is probed once, not at each load. The child gets
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
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from runtime.errors import ModelLoadError
from runtime.load_plan import LoadRequest

log = logging.getLogger("mfc.serve")

#: what the probe decodes (or embeds)
PROMPT = "Hello"
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

    def stop(self) -> None:
        """Kill the probes running now and refuse new ones (the server is stopping)."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for proc in running:
            proc.kill()

    def _run(self, req: LoadRequest) -> tuple[str, str, bool]:
        """(result, error message or "", whether the verdict holds for the next load)."""
        job = {"load": dataclasses.asdict(req), "parent": os.getpid(), "data": _data_limit(req)}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.load_probe"],
                stdin=subprocess.PIPE, stdout=out, stderr=err, env=_child_env(),
            )  # fmt: skip
            with self._lock:
                self._running.add(proc)
                stopped = self._stopped
            try:
                if stopped:
                    proc.kill()
                timeout = None if math.isinf(self.timeout) else self.timeout
                try:
                    proc.communicate(json.dumps(job).encode(), timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    message = "timed out waiting for llama runner to start"
                    return "timeout", f"{message} - {last_error(_tail(err))}".rstrip(" -"), False
            finally:
                with self._lock:
                    self._running.discard(proc)
            if stopped or (self._stopped and proc.returncode != 0):
                return "stopped", "the server is shutting down", False
            if proc.returncode == 0:
                verdict = _verdict(out)
                error = verdict.get("error")
                if isinstance(error, str):  # llama.cpp refused it: the load's own error
                    return "refused", error, False
                if verdict.get("ok") is True:
                    return "passed", "", True
            if proc.returncode > 0:  # the probe's Python failed, not llama.cpp: load as before
                log.warning("load probe of %s failed (%s): %s", req.model_path,
                            exit_description(proc.returncode), _tail(err)[-2000:])  # fmt: skip
                return "failed", "", False
            reason = last_error(_tail(err)) or exit_description(proc.returncode)
            lasting = proc.returncode in [-s for s in CRASH_SIGNALS]
            return "crashed", f"llama runner process has terminated: {reason}", lasting


def _tail(f: IO[bytes]) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(size - STDERR_TAIL, 0))
    return f.read().decode("utf-8", errors="replace")


def _verdict(out: IO[bytes]) -> dict[str, Any]:
    """The child's verdict line (the last JSON object it wrote: llama.cpp may write too)."""
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


# --- the child ---------------------------------------------------------------------------


def rehearse(req: LoadRequest) -> None:
    """Do what loading `req` does in the server: the model, its context, one short decode
    (an embedding model: its embeddings context and one pass). ModelLoadError if llama.cpp
    refuses the model; a decode that returns an error is the request's, not the load's."""
    import llama_cpp as lc

    from runtime.embed_context import EmbedContext
    from runtime.embedding import Embedder
    from runtime.errors import ApiError
    from runtime.llama import LlamaModel
    from runtime.load_plan import plan

    llama = LlamaModel(req.model_path, req.adapter_paths, req.use_mmap)
    p = plan(llama, req)
    tokens = llama.tokenize_prompt(PROMPT) or [max(llama.bos, 0)]
    if p.settings is not None:
        # one thread: the same graph, and no OpenMP team waiting at each op's barrier for a
        # core a loaded machine has not given it (a 2-thread probe took 1-10 s there)
        settings = dataclasses.replace(p.settings, n_threads=1, n_threads_batch=1)
        ctx = llama.new_context(settings)
        n = min(len(tokens), settings.n_batch)
        batch = lc.llama_batch_get_one((lc.llama_token * n)(*tokens[:n]), n)
        lc.llama_decode(ctx, batch)
        return
    embedder = Embedder(llama, p.num_ctx, 1, max_jobs=req.num_parallel)
    try:
        EmbedContext(llama, embedder.settings).run([tokens[: embedder.n_ctx]])
    except ModelLoadError:
        raise
    except ApiError:
        pass


def main() -> None:
    """The probe child: a JSON job on stdin, one JSON verdict line on stdout (or a crash)."""
    from quant.child_process import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    die_with_parent()
    job = json.loads(sys.stdin.buffer.read())
    if os.getppid() != job["parent"]:  # the server ended before the line above
        os._exit(1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a core of a mapped model: gigabytes
    if job["data"] > 0:
        with contextlib.suppress(ValueError, OSError):  # above a hard limit already lower
            resource.setrlimit(resource.RLIMIT_DATA, (job["data"], job["data"]))
    load = job["load"]
    req = LoadRequest(**{**load, "adapter_paths": tuple(load["adapter_paths"])})
    try:
        rehearse(req)
    except ModelLoadError as exc:
        print(json.dumps({"error": exc.message}), flush=True)
    else:
        print(json.dumps({"ok": True}), flush=True)
    os._exit(0)  # the verdict is out: no teardown of the model and interpreter to wait for


if __name__ == "__main__":
    main()
