"""Reading input tensors: byte sizes of any ggml type, rows as float32 (dequantizing F16,
BF16 and quantized inputs), and the validity checks llama.cpp's loader makes."""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass

import numpy as np

from quant.errors import QuantError
from quant.formats import BY_ID, BlockFormat
from quant.numerics import F32, Bytes, Floats
from quant.tensor import check_finite, quantize_rows, validate


def type_layout(type_id: int) -> tuple[str, int, int]:
    """(name, block size, bytes per block) of any ggml type gguf knows."""
    fmt = BY_ID.get(type_id)
    if fmt is not None:
        return fmt.name, fmt.block, fmt.type_size
    import gguf

    try:
        qtype = gguf.GGMLQuantizationType(type_id)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError) as exc:
        raise QuantError(f"unknown ggml tensor type {type_id}") from exc
    return qtype.name, block, size


def to_float(type_id: int, raw: Bytes, rows: int, n: int, tensor: str) -> Floats:
    """Rows of `raw` (type `type_id`) as float32 (rows, n), as llama.cpp's `to_float` does."""
    fmt = BY_ID.get(type_id)
    if fmt is not None:
        if fmt.quantized:
            validate(fmt, raw, tensor)
        if fmt.type_id == 0:
            out = raw.view(F32).reshape(rows, n)
        else:
            out = fmt.dequantize_blocks(raw.reshape(-1, fmt.type_size)).reshape(rows, n)
    else:
        import gguf

        try:
            out = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(type_id))
        except NotImplementedError as exc:
            raise QuantError(
                f"tensor {tensor!r}: cannot convert type {type_layout(type_id)[0]}", tensor=tensor
            ) from exc
        out = np.asarray(out, dtype=F32).reshape(rows, n)
    if fmt is None or not fmt.quantized:
        check_finite(out, tensor)
    return out


def check_copied(type_id: int, raw: Bytes, tensor: str) -> None:
    """The loader's `ggml_validate_row_data` on a tensor that is copied unchanged."""
    fmt = BY_ID.get(type_id)
    if fmt is None:
        return
    if fmt.quantized:
        validate(fmt, raw, tensor)
    elif fmt.type_id == 0:
        check_finite(raw.view("<f4"), tensor)
    else:
        check_finite(fmt.dequantize_blocks(raw.reshape(-1, fmt.type_size)), tensor)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows [row, row + nrows) of one tensor: read from `path`, quantized to `target` and
    written at byte `at` of `dest` (the output is laid out before any data is computed)."""

    path: str
    offset: int  # absolute file offset of the tensor's data
    name: str
    type_id: int
    n: int  # values per row
    row: int
    nrows: int
    target: str
    imatrix: Floats | None
    dest: str
    at: int
    keep: bool = False  # also return the bytes (for a tensor cache)


_FILES: dict[tuple[str, int], int] = {}


def _fd(path: str, flags: int) -> int:
    fd = _FILES.get((path, flags))
    if fd is None:
        fd = _FILES[path, flags] = os.open(path, flags)
    return fd


_MAPS: dict[str, mmap.mmap] = {}


def _map(path: str) -> mmap.mmap:
    """The input file mapped read-only (zero-copy reads, as llama.cpp's loader does)."""
    m = _MAPS.get(path)
    if m is None:
        with open(path, "rb") as fh:  # noqa: PTH123
            m = _MAPS[path] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return m


def close_files() -> None:
    """Close the descriptors and mappings `quantize_chunk` opened in this process."""
    while _FILES:
        os.close(_FILES.popitem()[1])
    while _MAPS:
        with contextlib.suppress(BufferError):
            _MAPS.popitem()[1].close()


def write_at(dest: str, data: bytes | memoryview, at: int) -> None:
    fd = _fd(dest, os.O_WRONLY)
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def quantize_chunk(c: Chunk) -> bytes | int:
    """Read, convert, quantize and write one chunk (in a worker process); the number of
    bytes written, or the bytes themselves with `keep`."""
    from quant.formats import FORMATS

    _, block, size = type_layout(c.type_id)
    row_bytes = c.n // block * size
    at = c.offset + c.row * row_bytes
    count = c.nrows * row_bytes
    src = _map(c.path)
    if at + count > len(src):
        raise QuantError(f"{c.path} is truncated (tensor {c.name!r} ends past the end)")
    raw = np.frombuffer(src, dtype=np.uint8, count=count, offset=at)
    x = to_float(c.type_id, raw, c.nrows, c.n, c.name)
    fmt: BlockFormat = FORMATS[c.target]
    with np.errstate(all="ignore"):
        out = quantize_rows(fmt, x, c.imatrix)
    del x, raw
    # the pages stay in the page cache; dropping them from this mapping keeps RSS small
    page = mmap.PAGESIZE
    start = at // page * page
    src.madvise(mmap.MADV_DONTNEED, start, min(len(src), at + count) - start)
    validate(fmt, out, c.name)
    write_at(c.dest, out.data, c.at)
    return out.tobytes() if c.keep else out.nbytes
