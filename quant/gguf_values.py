"""GGUF's typed values as they sit in a file: the scalar formats, arrays, and the cursor
that reads them without running past the buffer's end; the errors a malformed or cut-short
file raises. quant/gguf_read.py builds the header and tensor table from these."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Any

from quant.errors import QuantError
from quant.gguf_constants import GGUFValueType

#: arrays of arrays deeper than this are refused (llama.cpp reads no nested array at all)
MAX_ARRAY_DEPTH = 32
CUT_HINT = "the file was probably cut short while downloading or copying; fetch it again"

_SCALARS: dict[int, tuple[str, int]] = {
    GGUFValueType.UINT8: ("B", 1),
    GGUFValueType.INT8: ("b", 1),
    GGUFValueType.UINT16: ("H", 2),
    GGUFValueType.INT16: ("h", 2),
    GGUFValueType.UINT32: ("I", 4),
    GGUFValueType.INT32: ("i", 4),
    GGUFValueType.FLOAT32: ("f", 4),
    GGUFValueType.BOOL: ("?", 1),
    GGUFValueType.UINT64: ("Q", 8),
    GGUFValueType.INT64: ("q", 8),
    GGUFValueType.FLOAT64: ("d", 8),
}


class GGUFFormatError(QuantError):
    """A file that is not a GGUF, or a GGUF that is truncated or malformed."""


class NotGGUFError(GGUFFormatError):
    """The file does not start with the GGUF magic."""


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """An array value: its item type, its length, and its items (all, or the first few)."""

    item_type: GGUFValueType
    length: int
    items: tuple[Any, ...]


class ValueCursor:
    """Reads values from a buffer in one byte order, refusing to run past its end."""

    def __init__(self, buf: mmap.mmap, path: str, order: str, pos: int) -> None:
        self.buf, self.path, self.order, self.pos = buf, path, order, pos
        self.size = len(buf)

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise GGUFFormatError(
                f"{self.path}: truncated GGUF: the file ends inside its header "
                f"(at byte {self.size})",
                hint=CUT_HINT,
            )

    def _unpack(self, fmt: str, size: int) -> Any:
        self._need(size)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def u32(self) -> int:
        return int(self._unpack("I", 4))

    def u64(self) -> int:
        return int(self._unpack("Q", 8))

    def string(self) -> str:
        n = self.u64()
        if n > 1 << 32:
            raise GGUFFormatError(
                f"{self.path}: malformed GGUF: string of {n} bytes at byte {self.pos}"
            )
        self._need(n)
        self.pos += n
        return self.buf[self.pos - n : self.pos].decode("utf-8", "replace")

    def value(self, vtype: int, keep: int | None, depth: int = 0) -> Any:
        """One value; arrays keep their first `keep` items (all if None)."""
        if vtype in _SCALARS:
            return self._unpack(*_SCALARS[vtype])
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise GGUFFormatError(
                    f"{self.path}: malformed GGUF: arrays nested more than "
                    f"{MAX_ARRAY_DEPTH} deep at byte {self.pos}"
                )
            return self._array(keep, depth + 1)
        raise GGUFFormatError(f"{self.path}: malformed GGUF: unknown value type {vtype}")

    def _array(self, keep: int | None, depth: int) -> GGUFArray:
        item_type, length = self.u32(), self.u64()
        if item_type not in _SCALARS and item_type not in (
            GGUFValueType.STRING,
            GGUFValueType.ARRAY,
        ):
            raise GGUFFormatError(f"{self.path}: malformed GGUF: array of unknown type {item_type}")
        n = length if keep is None else min(length, keep)
        if item_type in _SCALARS:
            fmt, size = _SCALARS[item_type]
            self._need(length * size)
            head = struct.unpack_from(f"{self.order}{n}{fmt}", self.buf, self.pos) if n else ()
            self.pos += length * size
            return GGUFArray(GGUFValueType(item_type), length, tuple(head))
        items = tuple(self.value(item_type, keep, depth) for _ in range(n))
        if item_type == GGUFValueType.STRING:
            self._skip_strings(length - n)  # skipped, not decoded: vocabularies are large
        else:
            for _ in range(length - n):
                self.value(item_type, keep, depth)
        return GGUFArray(GGUFValueType(item_type), length, items)

    def _skip_strings(self, count: int) -> None:
        length = struct.Struct(self.order + "Q").unpack_from
        buf, pos, end = self.buf, self.pos, self.size - 8
        for _ in range(count):
            if pos > end:
                self.pos = pos
                self._need(8)
            pos += 8 + length(buf, pos)[0]
        self.pos = pos
        self._need(0)
