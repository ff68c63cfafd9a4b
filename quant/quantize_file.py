"""Quantize a whole GGUF file the way `llama_model_quantize` does, byte for byte.

The plan (types, order, metadata) is made and checked before anything is written; tensor
data is then streamed into a temporary file next to the destination, chunks of rows being
quantized by a pool of worker processes, and the file is renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from quant import gguf_io
from quant.errors import QuantError
from quant.formats import BY_ID, block_format
from quant.imatrix import Imatrix, load_imatrix
from quant.numerics import F32
from quant.policy import ModelFacts, Plan, file_type, plan_tensors
from quant.source import (
    Chunk,
    check_copied,
    close_files,
    quantize_chunk,
    type_layout,
    write_at,
)
from quant.tensor import rows_per_chunk

_DROP_KEYS = {"general.quantization_version", "general.file_type",
              "split.no", "split.count", "split.tensors.count"}
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


@dataclass(frozen=True, slots=True)
class QuantizeResult:
    path: Path
    ftype: str
    tensors: int
    quantized: int
    input_bytes: int
    output_bytes: int
    seconds: float
    types: dict[str, int]  # tensor type -> number of tensors written with it


def _facts(g: gguf_io.GGUFFile) -> ModelFacts:
    arch = g.get("general.architecture")
    if not isinstance(arch, str):
        raise QuantError(f"{g.path} has no general.architecture: not a model file")

    def first(key: str, default: int) -> int:
        v = g.get(f"{arch}.{key}", default)
        if isinstance(v, np.ndarray):
            return int(v[0]) if v.size else default
        return int(v)

    n_layer = first("block_count", -1)
    if n_layer < 0:
        raise QuantError(f"{g.path} has no {arch}.block_count")
    n_head = first("attention.head_count", 0)
    return ModelFacts(arch, n_layer, n_head, first("attention.head_count_kv", n_head),
                      first("expert_count", 0))


def _type_arg(name: str | None, what: str) -> str | None:
    if name is None:
        return None
    try:
        return block_format(name).name
    except QuantError as exc:
        raise QuantError(f"unknown {what} {name!r}", hint=exc.hint) from exc


ImatrixArg = str | Path | Imatrix | Mapping[str, npt.ArrayLike] | None


def _imatrix_arg(imatrix: ImatrixArg) -> Imatrix | None:
    if imatrix is None or isinstance(imatrix, Imatrix):
        return imatrix
    if isinstance(imatrix, str | Path):
        return load_imatrix(imatrix)
    entries = {k: np.asarray(v, dtype=F32).reshape(-1) for k, v in imatrix.items()}
    for k, v in entries.items():
        if not np.isfinite(v).all():
            raise QuantError(f"imatrix has non-finite values for {k!r}", tensor=k)
    return Imatrix(entries)


def _weights_for(p: Plan, im: Imatrix | None) -> npt.NDArray[np.float32] | None:
    """The imatrix rows of a tensor, checked as llama.cpp checks them."""
    t = p.tensor
    w = im.get(t.name) if im else None
    experts = t.ne[2] if len(t.ne) > 2 else 1
    if w is not None and w.size != t.ne[0] * experts:
        if t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            w = None
        else:
            raise QuantError(
                f"imatrix has {w.size} values for tensor {t.name!r}, which needs "
                f"{t.ne[0] * experts}", tensor=t.name,
                hint="the imatrix was computed for a different model",
            )
    if w is None and p.requires_imatrix:
        raise QuantError(
            f"tensor {t.name!r} needs an importance matrix for this quantization type"
            + (": the imatrix has no entry for it" if im else ""),
            tensor=t.name, hint="pass --imatrix FILE (made with llama-imatrix)",
        )
    return w


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


def quantize_file(
    src: str | Path,
    dst: str | Path,
    ftype: str,
    *,
    imatrix: ImatrixArg = None,
    pure: bool = False,
    allow_requantize: bool = False,
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
    leave_output_tensor: bool = False,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    cache: TensorCache | None = None,
) -> QuantizeResult:
    """Quantize GGUF `src` to `dst` as `llama_model_quantize` would with the same options.

    Raises `QuantError` for bad input (not a GGUF, truncated, unknown type, non-finite
    weights, missing imatrix, ...); `dst` is only created, atomically, on success.
    """
    started = time.perf_counter()
    ft = file_type(ftype)
    out_type = _type_arg(output_tensor_type, "output tensor type")
    emb_type = _type_arg(token_embedding_type, "token embedding type")
    im = _imatrix_arg(imatrix)
    dst = Path(dst)
    if not dst.parent.is_dir():
        raise QuantError(f"cannot write {dst}: folder {dst.parent} does not exist")
    with gguf_io.GGUFFile(src) as g:
        plans = plan_tensors(
            g.tensors, _facts(g), ft, pure=pure, has_imatrix=im is not None,
            output_type=out_type, token_embedding_type=emb_type,
            quantize_output=not leave_output_tensor,
        )
        sizes = _check(g, plans, allow_requantize)
        weights = {p.tensor.name: _weights_for(p, im) for p in plans if p.quantize}
        kvs = [kv.raw for kv in g.kvs if kv.key not in _DROP_KEYS]
        kvs += [gguf_io.encode_u32("general.quantization_version", 2),
                gguf_io.encode_u32("general.file_type", ft.id)]
        infos, offset = [], 0
        for p in plans:
            infos.append((p.tensor.name, p.tensor.ne[: p.tensor.n_dims], p.target, offset))
            offset += -(-sizes[p.tensor.name][1] // gguf_io.ALIGNMENT) * gguf_io.ALIGNMENT
        header = gguf_io.header_bytes(kvs, infos)
        total = len(header) + offset
        places = {name: len(header) + at for name, _, _, at in infos}
        if dst.is_dir():
            raise QuantError(f"cannot write {dst}: it is a folder")
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(header)
                fh.truncate(total)  # padding stays zero; tensors are written in place
            _write_tensors(tmp, g, plans, places=places, sizes=sizes, weights=weights,
                           threads=threads, cache=cache, progress=progress, total=total)
            tmp.replace(dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise QuantError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    counts: dict[str, int] = {}
    for p in plans:
        name = type_layout(p.target)[0]
        counts[name] = counts.get(name, 0) + 1
    return QuantizeResult(dst, ft.name, len(plans), sum(p.quantize for p in plans),
                          Path(src).stat().st_size, total, time.perf_counter() - started, counts)


def _check(
    g: gguf_io.GGUFFile, plans: list[Plan], allow_requantize: bool
) -> dict[str, tuple[int, int]]:
    """Input and output byte sizes per tensor, after the checks llama.cpp would fail on."""
    sizes = {}
    for p in plans:
        t = p.tensor
        src_name, block, size = type_layout(t.type_id)
        if t.ne[0] % block:
            raise QuantError(f"tensor {t.name!r}: {t.ne[0]} values per row is not a whole "
                             f"number of {src_name} blocks", tensor=t.name)
        nbytes = t.nrows * (t.ne[0] // block) * size
        g.check_range(t, nbytes)
        out = nbytes
        if p.quantize:
            target = BY_ID[p.target]
            if t.ne[0] % target.block:
                raise QuantError(f"tensor {t.name!r}: rows of {t.ne[0]} values cannot be split "
                                 f"into {target.name} blocks of {target.block}", tensor=t.name)
            if block > 1 and not allow_requantize:
                raise QuantError(
                    f"tensor {t.name!r} is already quantized ({src_name})",
                    tensor=t.name,
                    hint="requantizing loses quality; pass --allow-requantize to do it anyway",
                )
            out = t.nrows * target.row_bytes(t.ne[0])
        sizes[t.name] = (nbytes, out)
    return sizes


def _source_key(g: gguf_io.GGUFFile) -> str:
    st = g.path.stat()
    return f"{g.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _cache_key(base: str, p: Plan, w: npt.NDArray[np.float32] | None) -> str:
    h = hashlib.sha256(f"{base}|{p.tensor.name}|{p.tensor.offset}|{p.target}|".encode())
    h.update(b"-" if w is None else np.ascontiguousarray(w, dtype="<f4").tobytes())
    return h.hexdigest()


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
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_ignore_sigint)


def _ignore_sigint() -> None:
    """Ctrl-C is the parent's to handle: it stops the pool and removes the partial file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


def _write_tensors(
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


__all__ = ["QuantizeProgress", "QuantizeResult", "TensorCache", "quantize_file"]
