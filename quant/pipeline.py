"""Running a quantization: chunks of rows handed to worker processes, which read the input
through a shared mapping and write their results straight into the laid-out output file;
tensors copied unchanged and cached tensors are written by the caller's process."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quant.errors import QuantError
from quant.formats import BY_ID
from quant.gguf_read import GGUFFile
from quant.gguf_write import padded
from quant.policy import Plan
from quant.source import Chunk, check_copied, close_files, quantize_chunk, write_at
from quant.tensor import rows_per_chunk

_COPY_SLAB = 64 << 20


@dataclass(frozen=True, slots=True)
class QuantizeProgress:
    """Reported after each tensor: how far the output file is."""

    tensor: str
    index: int  # 1-based
    count: int
    bytes_done: int
    bytes_total: int


ProgressFn = Callable[[QuantizeProgress], None]


class TensorCache(Protocol):
    """Optional memo of quantized tensors, keyed by source, tensor, type and imatrix."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


def _source_key(g: GGUFFile) -> str:
    st = g.path.stat()
    return f"{g.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _cache_key(base: str, p: Plan, w: npt.NDArray[np.float32] | None) -> str:
    h = hashlib.sha256(f"{base}|{p.tensor.name}|{p.tensor.offset}|{p.target}|".encode())
    h.update(b"-" if w is None else np.ascontiguousarray(w, dtype="<f4").tobytes())
    return h.hexdigest()


def _chunks(
    p: Plan,
    g: GGUFFile,
    w: npt.NDArray[np.float32] | None,
    *,
    dest: str,
    at: int,
    keep: bool,
) -> Iterator[Chunk]:
    t = p.tensor
    target = BY_ID[p.target]
    n, per_expert = t.ne[0], (t.ne[1] if len(t.ne) > 1 else 1)
    step = rows_per_chunk(n)
    offset = g.data_start + t.offset
    row = 0
    while row < t.nrows:
        # a chunk never spans two experts: each has its own slice of the importance matrix
        nrows = min(step, t.nrows - row, per_expert - row % per_expert)
        expert = row // per_expert
        wv = None if w is None else w[expert * n : (expert + 1) * n]
        yield Chunk(
            str(g.path),
            offset,
            t.name,
            t.type_id,
            n,
            row,
            nrows,
            target.name,
            wv,
            dest,
            at + row * target.row_bytes(n),
            keep,
        )
        row += nrows


#: default number of worker processes: all cores, up to this (each holds ~150 MB of chunks)
MAX_DEFAULT_WORKERS = 8


def worker_count(threads: int | None) -> int:
    return threads or min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


_fork_ok = False


@contextlib.contextmanager
def forked_workers() -> Iterator[None]:
    """Within this block, the calling process declares it holds nothing a worker must not
    inherit (a one-shot command: no server socket, no store lock, no other thread), so
    workers are forked from it directly. That saves the fork server's interpreter start-up
    and imports, ~0.25 s of CPU: a fifth of a small model's whole quantization to Q8_0."""
    global _fork_ok  # noqa: PLW0603 (a process-wide choice, for the block's duration)
    before, _fork_ok = _fork_ok, True
    try:
        yield
    finally:
        _fork_ok = before


def _pool(threads: int | None) -> ProcessPoolExecutor | None:
    n = worker_count(threads)
    if n <= 1:
        return None
    if _fork_ok and sys.platform.startswith("linux") and threading.active_count() == 1:
        return ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_worker_init,
            initargs=(os.getpid(),),
        )
    # otherwise workers come from a fork server (a fresh interpreter started with no
    # descriptor of ours but its pipes), never from forking the caller: a server's listening
    # socket, client connections and store lock must not live on in a worker
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["quant.source", "quant.pipeline"])
    return ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    )


#: how often a worker checks that its owner is still there, where there is no pidfd (s)
PARENT_CHECK_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1


def _worker_init(owner: int) -> None:
    """Tie the worker's life to `owner` (the quantizing process), whatever ends that.

    A watcher thread ends the worker as soon as `owner` has exited (a zombie not yet
    reaped counts as exited). The fork server, the worker's parent, exits once every
    worker is gone, and Linux's parent-death signal covers a fork server killed first.
    Ctrl-C and SIGTERM are the owner's to handle: it stops the pool and removes the
    partial file.

    Kernels allocate arrays of a few MB per chunk; glibc would map and unmap each one
    (a page fault per 4 KB every time), so workers keep such blocks on the heap instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    watch = _owner_handle(owner)
    if watch is None or _exited(watch, timeout=0):
        os._exit(1)
    threading.Thread(target=_watch_owner, args=(watch,), name="owner-watch", daemon=True).start()


def _owner_handle(pid: int) -> int | str | None:
    """Something to watch `pid` by: a pidfd (Linux), else the pid as text; None if gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return str(pid)


def _exited(watch: int | str, timeout: float | None) -> bool:
    """Whether the watched process has exited (a zombie counts), waiting up to `timeout`."""
    if isinstance(watch, int):  # a pidfd turns readable when the process exits
        poller = select.poll()
        poller.register(watch, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
    deadline = time.monotonic() + (timeout or 0)
    while True:
        try:
            os.kill(int(watch), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if timeout is not None and time.monotonic() >= deadline:
            return False
        time.sleep(PARENT_CHECK_SECONDS)


def _watch_owner(watch: int | str) -> None:
    _exited(watch, timeout=None)
    os._exit(1)


def stop_fork_server() -> None:
    """Stop the fork server the workers came from, if one runs, and wait for it.

    It is otherwise kept for the next quantization and ends with this process; waiting
    for it makes the workers' CPU time part of this process's children's (`getrusage`),
    which a benchmark needs.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop):
        stop()


@dataclass(slots=True)
class _Job:
    index: int
    plan: Plan
    chunk: Chunk | None = None  # None: copy the tensor, or write `data`
    last: bool = True  # the last chunk of its tensor
    data: bytes | None = None
    future: Future[bytes | int] | None = None


def _jobs(
    g: GGUFFile,
    plans: list[Plan],
    weights: dict[str, npt.NDArray[np.float32] | None],
    *,
    cache: TensorCache | None,
    dest: Path,
    places: dict[str, int],
) -> Iterator[_Job]:
    base = _source_key(g) if cache else ""
    for index, p in enumerate(plans, 1):
        if not p.quantize:
            yield _Job(index, p)
            continue
        w = weights[p.tensor.name]
        data = cache.get(_cache_key(base, p, w)) if cache else None
        if data is not None:
            yield _Job(index, p, data=data)
            continue
        chunks = list(
            _chunks(p, g, w, dest=str(dest), at=places[p.tensor.name], keep=cache is not None)
        )
        for k, c in enumerate(chunks):
            yield _Job(index, p, c, last=k == len(chunks) - 1)


def write_tensors(
    dest: Path,
    g: GGUFFile,
    plans: list[Plan],
    *,
    places: dict[str, int],
    sizes: dict[str, tuple[int, int]],
    weights: dict[str, npt.NDArray[np.float32] | None],
    threads: int | None,
    cache: TensorCache | None,
    progress: ProgressFn | None,
    total: int,
) -> None:
    """Fill in every tensor; workers quantize and write chunks ahead of the one reported."""
    pool = _pool(threads)
    limit = 2 * worker_count(threads) + 2
    queue: deque[_Job] = deque()
    jobs = _jobs(g, plans, weights, cache=cache, dest=dest, places=places)
    in_flight = 0
    parts: list[bytes] = []
    base = _source_key(g) if cache else ""
    done = min(places.values(), default=total)
    try:
        while True:
            while in_flight < limit:
                job = next(jobs, None)
                if job is None:
                    break
                if job.chunk is not None and pool is not None:
                    job.future = pool.submit(quantize_chunk, job.chunk)
                    in_flight += 1
                queue.append(job)
            if not queue:
                break
            job = queue.popleft()
            t = job.plan.tensor
            nbytes, out = sizes[t.name]
            if job.future is not None:
                in_flight -= 1
                try:
                    result = job.future.result()
                except BrokenProcessPool:
                    raise QuantError(
                        "a quantize worker process died (killed, or out of memory?)",
                        hint="try fewer worker processes (--threads)",
                    ) from None
            elif job.chunk is not None:
                result = quantize_chunk(job.chunk)
            elif job.data is not None:
                write_at(str(dest), job.data, places[t.name])
                result = 0
            else:  # a tensor copied unchanged
                for at in range(0, nbytes, _COPY_SLAB):
                    raw = g.read(t, at, min(_COPY_SLAB, nbytes - at))
                    check_copied(t.type_id, raw, t.name)
                    write_at(str(dest), raw.data, places[t.name] + at)
                result = 0
            if cache and isinstance(result, bytes):
                parts.append(result)
            if not job.last:
                continue
            if cache and parts:
                cache.put(_cache_key(base, job.plan, weights[t.name]), b"".join(parts))
            parts = []
            done += padded(out)
            if progress:
                progress(QuantizeProgress(t.name, job.index, len(plans), done, total))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        close_files()
