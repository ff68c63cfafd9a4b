"""The load probe's child side (runtime/load_probe.py is the server's side).

`python -m runtime.probe_child --zygote PID` is a warm interpreter, llama-cpp-python
imported once, that forks one probe per job it reads from stdin (a line of JSON), reports
the probe's pid and then its exit status on stdout, and ends with the server (stdin's end,
or the parent-death signal). Forking it is safe where forking the server is not: it runs
one thread (OPENBLAS_NUM_THREADS=1: numpy's BLAS would start a second) and holds no
descriptor but its pipes. Each probe writes its verdict and llama.cpp's stderr to the
files the job names. `python -m runtime.probe_child` (no argument) runs one job from
stdin in a fresh interpreter: the fallback when no zygote can be had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import signal
import sys
import traceback
from typing import Any

from quant.child_process import die_with_parent
from runtime.errors import ModelLoadError
from runtime.load_plan import LoadRequest

#: what the probe decodes (or embeds)
PROMPT = "Hello"


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


def run_job(job: dict[str, Any]) -> None:
    """Probe `job` in this process, print the verdict line and exit (or die trying)."""
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


def _forked(job: dict[str, Any]) -> None:
    """A probe forked from the zygote: its output to the job's files, then `run_job`."""
    try:
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.dup2(f, fd)
            os.close(f)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # not the zygote's job pipe
        os.close(null)
        die_with_parent()
        run_job(job)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(1)


def zygote(parent: int) -> None:
    """Fork a probe per job line on stdin until it closes; answer each with two lines:
    {"pid": ...} once it runs, {"status": ...} (negative: a signal) once it has ended."""
    import runtime.embed_context
    import runtime.embedding
    import runtime.llama  # noqa: F401 (what every probe needs, imported once here)

    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        if os.getppid() != parent:
            return
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _forked(job)
        out.write(json.dumps({"pid": pid}).encode() + b"\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
        out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    die_with_parent()
    if len(sys.argv) == 3 and sys.argv[1] == "--zygote":
        if os.getppid() == int(sys.argv[2]):  # else the server ended before the line above
            zygote(int(sys.argv[2]))
        return
    job = json.loads(sys.stdin.buffer.read())
    if os.getppid() == job["parent"]:
        run_job(job)
    os._exit(1)


if __name__ == "__main__":
    main()
