"""Running a quantization: chunks of rows handed to worker processes, which read the input
through a shared mapping and write their results straight into the laid-out output file;
tensors copied unchanged and cached tensors are written by the caller's process."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quant import gguf_io
from quant.formats import BY_ID
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


def _source_key(g: gguf_io.GGUFFile) -> str:
    st = g.path.stat()
    return f"{g.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _cache_key(base: str, p: Plan, w: npt.NDArray[np.float32] | None) -> str:
    h = hashlib.sha256(f"{base}|{p.tensor.name}|{p.tensor.offset}|{p.target}|".encode())
    h.update(b"-" if w is None else np.ascontiguousarray(w, dtype="<f4").tobytes())
    return h.hexdigest()


def _chunks(
    p: Plan, g: gguf_io.GGUFFile, w: npt.NDArray[np.float32] | None, *, dest: str, at: int,
    keep: bool,
) -> Iterator[Chunk]:
    t = p.tensor
    target = BY_ID[p.target]
    n, per_expert = t.ne[0], (t.ne[1] if len(t.ne) > 1 else 1)
    step = rows_per_chunk(n)
    offset = g.data_start + t.offset
    for row in range(0, t.nrows, step):
        nrows = min(step, t.nrows - row, per_expert - row % per_expert)
        expert = row // per_expert
        wv = None if w is None else w[expert * n : (expert + 1) * n]
        yield Chunk(str(g.path), offset, t.name, t.type_id, n, row, nrows, target.name, wv,
                    dest, at + row * target.row_bytes(n), keep)


#: default number of worker processes: all cores, up to this (each holds ~150 MB of chunks)
MAX_DEFAULT_WORKERS = 8


def worker_count(threads: int | None) -> int:
    return threads or min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def _pool(threads: int | None) -> ProcessPoolExecutor | None:
    n = worker_count(threads)
    if n <= 1:
        return None
    # fork starts workers at once with everything imported; workers only pread, compute and
    # return bytes, so no lock another thread of the caller may hold is ever needed there
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("fork")
    else:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["quant.source"])
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init)


def _worker_init() -> None:
    """Ctrl-C is the parent's to handle: it stops the pool and removes the partial file.

    Kernels allocate arrays of a few MB per chunk; glibc would map and unmap each one
    (a page fault per 4 KB every time), so workers keep such blocks on the heap instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD


@dataclass(slots=True)
class _Job:
    index: int
    plan: Plan
    chunk: Chunk | None = None  # None: copy the tensor, or write `data`
    last: bool = True  # the last chunk of its tensor
    data: bytes | None = None
    future: Future[bytes | int] | None = None


def _jobs(
    g: gguf_io.GGUFFile, plans: list[Plan], weights: dict[str, npt.NDArray[np.float32] | None],
    *, cache: TensorCache | None, dest: Path, places: dict[str, int],
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
        chunks = list(_chunks(p, g, w, dest=str(dest), at=places[p.tensor.name],
                              keep=cache is not None))
        for k, c in enumerate(chunks):
            yield _Job(index, p, c, last=k == len(chunks) - 1)


def write_tensors(
    dest: Path,
    g: gguf_io.GGUFFile,
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
                result = job.future.result()
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
            done += -(-out // gguf_io.ALIGNMENT) * gguf_io.ALIGNMENT
            if progress:
                progress(QuantizeProgress(t.name, job.index, len(plans), done, total))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        close_files()
