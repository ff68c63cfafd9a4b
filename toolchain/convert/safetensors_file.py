"""A safetensors file read through a memory map, one tensor at a time.

The header is parsed and checked up front (offsets inside the file, byte counts that
agree with dtype x shape), so a truncated or corrupt file fails before any output is
written. Tensor data is never copied on read: `array` is a view into the map, and
`release` hands its pages back to the kernel once the tensor has been written, so the
resident set tracks the tensor being converted rather than the whole model.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.files import not_regular
from toolchain.convert.errors import ConvertError

#: safetensors dtype -> numpy dtype the raw bytes are viewed as (BF16 as its uint16 bits).
DTYPES: dict[str, np.dtype[np.generic]] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

#: dtypes that hold weights we can convert.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})

_HEADER_LIMIT = 100 * 1024 * 1024  # the format's own cap on the JSON header


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a safetensors file: where its bytes are and what they hold."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset in the file
    end: int
    file: SafetensorsFile

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


class SafetensorsFile:
    """A parsed safetensors file; tensor data is mapped lazily on first access."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorEntry] = {}
        self._map: mmap.mmap | None = None
        self._parse_header()

    def _parse_header(self) -> None:
        problem = not_regular(self.path)  # a FIFO would block the read below
        if problem is not None:
            raise ConvertError(self.path, problem)
        try:
            size = self.path.stat().st_size
            with self.path.open("rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    raise ConvertError(self.path, "truncated safetensors file (no header)")
                n = int.from_bytes(head, "little")
                if n > min(size - 8, _HEADER_LIMIT):
                    raise ConvertError(
                        self.path,
                        f"truncated or corrupt safetensors file: header claims {n} bytes, "
                        f"file has {size} bytes",
                    )
                raw = fh.read(n)
        except OSError as exc:
            raise ConvertError(self.path, f"cannot read: {exc.strerror or exc}") from exc
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConvertError(self.path, "not a safetensors file (header is not JSON)") from exc
        except RecursionError:
            raise ConvertError(
                self.path, "not a safetensors file (header JSON is nested too deep)"
            ) from None
        if not isinstance(header, dict):
            raise ConvertError(self.path, "not a safetensors file (header is not an object)")
        base = 8 + n
        data_size = size - base
        for name, info in header.items():
            if name == "__metadata__":
                if isinstance(info, dict):
                    self.metadata = {str(k): str(v) for k, v in info.items()}
                continue
            self.tensors[name] = self._entry(name, info, base, data_size)

    def _entry(self, name: str, info: object, base: int, data_size: int) -> TensorEntry:
        if not isinstance(info, dict):
            raise ConvertError(self.path, f"corrupt header entry for tensor {name!r}")
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConvertError(self.path, f"corrupt header entry for tensor {name!r}") from exc
        if not 0 <= begin <= end:
            raise ConvertError(self.path, f"corrupt offsets for tensor {name!r}")
        if end > data_size:
            raise ConvertError(
                self.path,
                f"truncated: tensor {name!r} ends at byte {end} of the data section, "
                f"which holds only {data_size} bytes",
                hint="the download or copy was cut short; fetch the file again",
            )
        np_dtype = DTYPES.get(dtype)
        if np_dtype is not None and (end - begin) != math.prod(shape) * np_dtype.itemsize:
            raise ConvertError(
                self.path,
                f"tensor {name!r}: {end - begin} bytes do not hold a {dtype} tensor of shape "
                f"{list(shape)}",
            )
        return TensorEntry(name, dtype, shape, base + begin, base + end, self)

    def array(self, entry: TensorEntry) -> np.ndarray:
        """The tensor's data as a read-only view (BF16 as uint16 bits), shaped."""
        np_dtype = DTYPES.get(entry.dtype)
        if np_dtype is None:
            raise ConvertError(
                self.path,
                f"tensor {entry.name!r} has dtype {entry.dtype}, which mfc cannot convert",
                hint="supported weight dtypes: F32, F16, BF16, F64",
            )
        if entry.n_elements == 0:
            return np.zeros(entry.shape, dtype=np_dtype)
        if self._map is None:
            with self.path.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        flat = np.frombuffer(self._map, dtype=np_dtype, count=entry.n_elements, offset=entry.start)
        return flat.reshape(entry.shape)

    def release(self, entry: TensorEntry) -> None:
        """Drop the tensor's pages from this process's resident set (data stays on disk)."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = entry.start - entry.start % page
        length = entry.end - start
        if length > 0:
            self._map.madvise(mmap.MADV_DONTNEED, start, length)

    def close(self) -> None:
        if self._map is not None:
            # BufferError: a caller still holds a view; the map is freed with it
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None


def is_safetensors_name(path: Path) -> bool:
    return path.suffix == ".safetensors" and not path.name.startswith(".")
