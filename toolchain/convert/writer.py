"""Write a planned GGUF: the header through `quant.gguf_write`, tensor data streamed in chunks.

The file is written to a temporary name beside the target (named for this process),
fsynced, then renamed: a conversion that fails or is killed leaves no partial output, and
a temp file a killed conversion left is removed by the next one to the same target.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from gguf import GGMLQuantizationType

from quant.files import remove_stale_temps, temp_path
from quant.gguf_write import ALIGNMENT, header_bytes, tensor_table
from toolchain.convert.architecture import HParams, Transform
from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata
from toolchain.convert.outtype import encode, to_float32
from toolchain.convert.safetensors_file import TensorEntry
from toolchain.progress import ByteMeter, ProgressCallback

#: elements converted at a time when a tensor needs no whole-tensor transform
CHUNK_ELEMENTS = 1 << 22

#: (float32 rows) -> encoded bytes; set for quantized output types
Encoder = Callable[[np.ndarray], np.ndarray]


@dataclass
class PlannedTensor:
    """One output tensor: its GGUF name, type and size, and where its data comes from."""

    name: str
    shape: tuple[int, ...]  # numpy (row-major) order, as in the HF checkpoint
    ggml: GGMLQuantizationType
    nbytes: int
    source: TensorEntry | None = None
    #: further sources stacked after `source` along a new first axis (MoE experts)
    stacked: tuple[TensorEntry, ...] = ()
    data: np.ndarray | None = None  # generated tensors (float32)
    transform: Transform | None = None
    rows: int | None = None  # keep only the first `rows` rows (vocabulary truncation)
    encoder: Encoder | None = None
    #: the encoded bytes, read on demand (tensors kept in their checkpoint encoding)
    raw: Callable[[], np.ndarray] | None = None


def input_files(folder: Path) -> list[Path]:
    """Every file of an input folder a conversion may read: all but GGUF files (a converter
    never reads those, so converting again over `DIR/model.gguf` is fine) and hidden
    folders such as .git."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out.extend(Path(dirpath, f) for f in filenames if not f.lower().endswith(".gguf"))
    return out


def check_not_an_input(path: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output that is one of the inputs (same file, however it is named)."""
    try:
        st = path.stat()
    except OSError:
        return  # nothing there yet
    for p in inputs:
        try:
            if os.path.samestat(st, p.stat()):
                raise ConvertError(
                    path,
                    f"is an input of this conversion ({p})",
                    hint="write the GGUF to another file",
                )
        except OSError:
            continue


def write_gguf(
    path: Path,
    md: Metadata,
    tensors: list[PlannedTensor],
    hp: HParams | None,
    *,
    progress: ProgressCallback,
    status: str = "converting model",
    inputs: Iterable[Path] = (),
) -> None:
    """Write metadata and tensors to `path` atomically, reporting bytes through `progress`.

    `inputs` are the files the conversion reads: `path` may not be one of them.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ConvertError(path, "output directory does not exist")
    check_not_an_input(path, inputs)
    remove_stale_temps(path)
    try:
        tmp = temp_path(path)  # mode per umask, as a plain open would give
    except OSError as exc:
        raise ConvertError(path, f"cannot write: {exc.strerror or exc}") from None
    table = tensor_table(
        [(t.name, tuple(reversed(t.shape)), int(t.ggml), t.nbytes) for t in tensors]
    )
    try:
        with tmp.open("wb") as fout:
            fout.write(header_bytes(md.encoded(), table))
            _write_data(path, fout, tensors, hp, progress=progress, status=status)
            fout.flush()
            os.fsync(fout.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_data(
    path: Path,
    fout: IO[bytes],
    tensors: list[PlannedTensor],
    hp: HParams | None,
    *,
    progress: ProgressCallback,
    status: str,
) -> None:
    meter = ByteMeter(progress, status, sum(t.nbytes for t in tensors), steps=100)
    done = 0
    for t in tensors:
        written = 0
        for part in _encoded_chunks(t, hp):
            buf = np.ascontiguousarray(part).reshape(-1).view(np.uint8).data
            fout.write(buf)
            written += len(buf)
            done += len(buf)
            meter.update(done)
        if written != t.nbytes:
            raise ConvertError(
                path, f"internal error: {t.name} wrote {written} of {t.nbytes} bytes"
            )
        _pad(fout)


def _pad(fout: IO[bytes]) -> None:
    pad = -fout.tell() % ALIGNMENT
    if pad:
        fout.write(b"\0" * pad)


def _encoded_chunks(t: PlannedTensor, hp: HParams | None) -> Iterator[np.ndarray]:
    if t.raw is not None:
        yield t.raw()
        return
    if t.data is not None:
        yield _encode(t, t.data, None, None)
        return
    assert t.source is not None
    # a stacked tensor's row-major bytes are its parts' bytes one after another
    for entry in (t.source, *t.stacked):
        yield from _entry_chunks(t, entry, hp)


def _entry_chunks(t: PlannedTensor, entry: TensorEntry, hp: HParams | None) -> Iterator[np.ndarray]:
    raw = entry.file.array(entry)
    if t.rows is not None:
        raw = raw[: t.rows]
    try:
        if t.transform is not None:
            assert hp is not None
            x = t.transform(to_float32(raw, entry.dtype), hp)
            yield _encode(t, np.ascontiguousarray(x, dtype=np.float32), None, None)
            return
        flat = raw.reshape(raw.shape[0], -1) if raw.ndim > 1 else raw.reshape(1, -1)
        step = max(1, CHUNK_ELEMENTS // max(flat.shape[1], 1))
        for r0 in range(0, flat.shape[0], step):
            part = flat[r0 : r0 + step]
            yield _encode(t, to_float32(part, entry.dtype), part, entry.dtype)
            entry.file.release(entry)
    finally:
        del raw
        entry.file.release(entry)


def _encode(
    t: PlannedTensor, x: np.ndarray, raw: np.ndarray | None, dtype: str | None
) -> np.ndarray:
    if t.encoder is not None:
        return t.encoder(x)
    return encode(x, raw, dtype, t.ggml)
