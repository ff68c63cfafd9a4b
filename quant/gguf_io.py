"""A small GGUF reader and writer with the exact byte layout llama.cpp writes.

The reader keeps every key/value pair's encoded bytes, so they are copied to the output
unchanged; values are decoded only when asked for. Tensor data is read by byte range, so
a file is never loaded whole.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant.errors import QuantError
from quant.files import not_regular

MAGIC = b"GGUF"
ALIGNMENT = 32
# value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY = range(10)
UINT64, INT64, FLOAT64 = 10, 11, 12
_SCALARS: dict[int, str] = {
    UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
    FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d",
}


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    vtype: int
    raw: bytes  # the whole encoded pair, key included
    value_at: int  # offset of the value inside `raw`
    array_type: int | None = None

    @property
    def value(self) -> Any:
        """The decoded value (arrays of numbers as numpy arrays, strings as str)."""
        return _decode(memoryview(self.raw), self.value_at, self.vtype)[0]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    type_id: int
    offset: int  # relative to the data section
    index: int  # position in the input file

    @property
    def n_dims(self) -> int:
        """`ggml_n_dims`: trailing dimensions of 1 do not count."""
        for i in range(len(self.ne) - 1, 0, -1):
            if self.ne[i] > 1:
                return i + 1
        return 1

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.ne, dtype=np.int64))

    @property
    def nrows(self) -> int:
        return self.n_elements // self.ne[0] if self.ne[0] else 0


def _decode(buf: memoryview, pos: int, vtype: int) -> tuple[Any, int]:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if vtype == STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        end = pos + 8 + n
        if end > len(buf):
            raise struct.error("string runs past the end")
        return bytes(buf[pos + 8 : end]).decode("utf-8", errors="replace"), end
    if vtype == ARRAY:
        etype, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in _SCALARS:
            size = struct.calcsize(_SCALARS[etype]) * n
            if pos + size > len(buf):
                raise struct.error("array runs past the end")
            arr = np.frombuffer(buf[pos : pos + size], dtype=np.dtype(_SCALARS[etype]))
            return arr, pos + size
        items = []
        for _ in range(n):
            item, pos = _decode(buf, pos, etype)
            items.append(item)
        return items, pos
    raise QuantError(f"malformed GGUF: unknown value type {vtype}")


class GGUFFile:
    """The metadata of one GGUF file and access to its tensors' bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        problem = not_regular(self.path)  # a FIFO or a device would block or never end
        if problem is not None:
            raise QuantError(f"cannot read {self.path}: {problem}")
        try:
            with self.path.open("rb") as fh:
                self._size = fh.seek(0, 2)
                if self._size < 24:
                    raise QuantError(f"{self.path} is not a GGUF file (too short)")
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise QuantError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            self._parse(memoryview(self._map))
        except struct.error as exc:
            self.close()
            raise QuantError(
                f"{self.path} is truncated or corrupt (GGUF header: {exc})",
                hint="the file may still be downloading, or was cut short",
            ) from exc
        except QuantError as exc:
            self.close()
            if exc.message.startswith("malformed GGUF"):
                raise QuantError(f"{self.path}: {exc.message}") from None
            raise

    def _parse(self, buf: memoryview) -> None:
        if bytes(buf[:4]) != MAGIC:
            raise QuantError(f"{self.path} is not a GGUF file (bad magic)")
        self.version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if self.version not in (2, 3):
            raise QuantError(f"{self.path}: GGUF version {self.version} is not supported")
        pos = 24
        self.kvs: list[KV] = []
        for _ in range(n_kv):
            start = pos
            key, pos = _decode(buf, pos, STRING)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            value_pos = pos + 4
            array_type = struct.unpack_from("<I", buf, value_pos)[0] if vtype == ARRAY else None
            pos = _skip(buf, value_pos, vtype)
            self.kvs.append(KV(key, vtype, bytes(buf[start:pos]), value_pos - start, array_type))
        self.tensors: list[TensorInfo] = []
        for index in range(n_tensors):
            name, pos = _decode(buf, pos, STRING)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            ne = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            type_id, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            self.tensors.append(TensorInfo(name, tuple(ne), type_id, offset, index))
        align = self.get("general.alignment", ALIGNMENT)
        self.alignment = int(align) if isinstance(align, int) and align > 0 else ALIGNMENT
        self.data_start = -(-pos // self.alignment) * self.alignment

    def get(self, key: str, default: Any = None) -> Any:
        for kv in self.kvs:
            if kv.key == key:
                return kv.value
        return default

    def check_range(self, t: TensorInfo, nbytes: int) -> None:
        end = self.data_start + t.offset + nbytes
        if end > self._size:
            raise QuantError(
                f"{self.path} is truncated: tensor {t.name!r} ends at byte {end}, "
                f"the file has {self._size}",
                tensor=t.name,
                hint="the file may still be downloading, or was cut short",
            )

    def read(self, t: TensorInfo, start: int, size: int) -> np.ndarray:
        """`size` bytes of tensor `t` from byte `start` of its data (a copy)."""
        at = self.data_start + t.offset + start
        return np.frombuffer(self._map, dtype=np.uint8, count=size, offset=at).copy()

    def close(self) -> None:
        with contextlib.suppress(AttributeError, BufferError, ValueError):
            self._map.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: arrays of arrays deeper than this are refused (llama.cpp reads no nested array at all)
MAX_ARRAY_DEPTH = 32


def _skip(buf: memoryview, pos: int, vtype: int, depth: int = 0) -> int:
    if vtype in _SCALARS:
        return pos + struct.calcsize(_SCALARS[vtype])
    if vtype == STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        if pos + 8 + n > len(buf):
            raise struct.error("string runs past the end")
        return int(pos + 8 + n)
    if vtype == ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise QuantError(f"malformed GGUF: arrays nested more than {MAX_ARRAY_DEPTH} deep")
        etype, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in _SCALARS:
            end = pos + struct.calcsize(_SCALARS[etype]) * n
            if end > len(buf):
                raise struct.error("array runs past the end")
            return int(end)
        if etype == STRING:  # vocabularies: tens of thousands of strings
            length = struct.Struct("<Q").unpack_from
            for _ in range(n):
                pos += 8 + length(buf, pos)[0]
            if pos > len(buf):
                raise struct.error("array runs past the end")
            return pos
        for _ in range(n):
            pos = _skip(buf, pos, etype, depth + 1)
        return pos
    raise QuantError(f"malformed GGUF: unknown value type {vtype}")


def encode_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def encode_u32(key: str, value: int) -> bytes:
    return encode_string(key) + struct.pack("<II", UINT32, value)


def header_bytes(kvs: list[bytes], tensors: list[tuple[str, tuple[int, ...], int, int]]) -> bytes:
    """Magic, counts, the encoded pairs and the tensor infos `(name, ne, type_id, offset)`,
    padded to the alignment (GGUF v3, as `gguf_write_to_buf` lays it out)."""
    parts = [MAGIC, struct.pack("<IQQ", 3, len(tensors), len(kvs)), *kvs]
    for name, ne, type_id, offset in tensors:
        parts.append(encode_string(name))
        parts.append(struct.pack(f"<I{len(ne)}Q", len(ne), *ne))
        parts.append(struct.pack("<IQ", type_id, offset))
    head = b"".join(parts)
    return head + bytes(-len(head) % ALIGNMENT)

