"""Running a quantization: chunks of rows handed to worker processes, which read the input
through a shared mapping and write their results straight into the laid-out output file.

A one-shot command forks a team the caller is part of (`quant.team`); otherwise (a server,
a build with a tensor cache) a process pool from a fork server does the chunks and the
caller writes the tensors copied unchanged and the cached ones."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from quant import fork_server
from quant.child_process import keep_heap
from quant.formats import BY_ID
from quant.gguf_read import GGUFFile
from quant.gguf_write import padded
from quant.policy import Plan
from quant.source import Chunk, check_copied, close_files, quantize_chunk, write_at
from quant.team import died, run_team
from quant.tensor import rows_per_chunk

if TYPE_CHECKING:
    from concurrent.futures import Future

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
    import hashlib  # only a build with a tensor cache needs it (OpenSSL: ~3 ms to import)

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
    workers are forked from it directly, the caller one of them (`quant.team`). That saves
    the fork server's interpreter start-up and imports, ~0.25 s of CPU (a fifth of a small
    model's whole quantization to Q8_0), and a process pool's dispatching."""
    global _fork_ok  # noqa: PLW0603 (a process-wide choice, for the block's duration)
    before, _fork_ok = _fork_ok, True
    try:
        yield
    finally:
        _fork_ok = before


def _may_fork() -> bool:
    return _fork_ok and sys.platform.startswith("linux") and threading.active_count() == 1


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


def _run(job: _Job, g: GGUFFile, dest: Path, place: int, nbytes: int) -> bytes | int:
    """Do a job here: quantize its chunk, write its cached bytes, or copy its tensor."""
    if job.chunk is not None:
        return quantize_chunk(job.chunk)
    if job.data is not None:
        write_at(str(dest), job.data, place)
        return 0
    t = job.plan.tensor
    for at in range(0, nbytes, _COPY_SLAB):
        raw = g.read(t, at, min(_COPY_SLAB, nbytes - at))
        check_copied(t.type_id, raw, t.name)
        write_at(str(dest), raw.data, place + at)
    return 0


class _InOrder:
    """Reports tensors as they are finished, in file order, whichever chunk ends last."""

    def __init__(
        self, jobs: list[_Job], plans: list[Plan], progress: ProgressFn | None, total: int
    ) -> None:
        self.left = [0] * (len(plans) + 1)
        for job in jobs:
            self.left[job.index] += 1
        self.plans, self.progress, self.total = plans, progress, total
        self.next, self.done = 1, 0

    def finished(self, job: _Job, sizes: dict[str, tuple[int, int]], start: int) -> None:
        self.left[job.index] -= 1
        while self.next <= len(self.plans) and self.left[self.next] == 0:
            t = self.plans[self.next - 1].tensor
            self.done += padded(sizes[t.name][1])
            if self.progress:
                n = len(self.plans)
                self.progress(QuantizeProgress(t.name, self.next, n, start + self.done, self.total))
            self.next += 1


def _write_as_team(
    dest: Path,
    g: GGUFFile,
    jobs: list[_Job],
    *,
    places: dict[str, int],
    sizes: dict[str, tuple[int, int]],
    members: int,
    report: _InOrder,
    start: int,
) -> None:
    def run(i: int) -> object:
        t = jobs[i].plan.tensor
        return _run(jobs[i], g, dest, places[t.name], sizes[t.name][0])

    keep_heap()
    try:
        run_team(len(jobs), run, members, lambda i: report.finished(jobs[i], sizes, start))
    finally:
        close_files()


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
    done = min(places.values(), default=total)
    if cache is None and worker_count(threads) > 1 and _may_fork():
        jobs = list(_jobs(g, plans, weights, cache=None, dest=dest, places=places))
        report = _InOrder(jobs, plans, progress, total)
        chunks = sum(job.chunk is not None for job in jobs)  # no fork a job could not use
        _write_as_team(
            dest,
            g,
            jobs,
            places=places,
            sizes=sizes,
            members=max(1, min(worker_count(threads), chunks)),
            report=report,
            start=done,
        )
        return
    from concurrent.futures.process import BrokenProcessPool

    pool = fork_server.pool(worker_count(threads))
    limit = 2 * worker_count(threads) + 2
    queue: deque[_Job] = deque()
    pending = _jobs(g, plans, weights, cache=cache, dest=dest, places=places)
    in_flight = 0
    parts: list[bytes] = []
    base = _source_key(g) if cache else ""
    try:
        while True:
            while in_flight < limit:
                job = next(pending, None)
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
                    raise died() from None
            else:
                result = _run(job, g, dest, places[t.name], nbytes)
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
