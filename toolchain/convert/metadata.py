"""GGUF key/value metadata with explicit types, collected in write order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quant.gguf_constants import GGUFValueType
from quant.gguf_write import encode_pair


@dataclass(frozen=True, slots=True)
class Entry:
    type: GGUFValueType
    value: Any
    sub_type: GGUFValueType | None = None


class Metadata:
    """An ordered set of typed GGUF keys. `{arch}` in a key is the architecture name."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self._items: dict[str, Entry] = {}

    def _key(self, key: str) -> str:
        return key.replace("{arch}", self.arch)

    def _put(self, key: str, entry: Entry) -> None:
        self._items[self._key(key)] = entry

    def u32(self, key: str, value: int) -> None:
        self._put(key, Entry(GGUFValueType.UINT32, int(value)))

    def i32(self, key: str, value: int) -> None:
        self._put(key, Entry(GGUFValueType.INT32, int(value)))

    def f32(self, key: str, value: float) -> None:
        self._put(key, Entry(GGUFValueType.FLOAT32, float(value)))

    def boolean(self, key: str, value: bool) -> None:
        self._put(key, Entry(GGUFValueType.BOOL, bool(value)))

    def string(self, key: str, value: str) -> None:
        self._put(key, Entry(GGUFValueType.STRING, value))

    def strings(self, key: str, values: Sequence[str]) -> None:
        self._put(key, Entry(GGUFValueType.ARRAY, list(values), GGUFValueType.STRING))

    def f32s(self, key: str, values: Sequence[float] | np.ndarray) -> None:
        self._put(key, Entry(GGUFValueType.ARRAY, values, GGUFValueType.FLOAT32))

    def i32s(self, key: str, values: Sequence[int] | np.ndarray) -> None:
        self._put(key, Entry(GGUFValueType.ARRAY, values, GGUFValueType.INT32))

    def u8s(self, key: str, values: bytes) -> None:
        self._put(key, Entry(GGUFValueType.ARRAY, list(values), GGUFValueType.UINT8))

    def bools(self, key: str, values: Sequence[bool]) -> None:
        self._put(key, Entry(GGUFValueType.ARRAY, [bool(v) for v in values], GGUFValueType.BOOL))

    def get(self, key: str) -> Any:
        entry = self._items.get(self._key(key))
        return None if entry is None else entry.value

    def __contains__(self, key: str) -> bool:
        return self._key(key) in self._items

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return iter(self._items.items())

    def encoded(self) -> list[bytes]:
        """The pairs as GGUF encodes them, `general.architecture` first (as llama.cpp's
        converter writes it)."""
        out = [encode_pair("general.architecture", GGUFValueType.STRING, self.arch)]
        for key, entry in self._items.items():
            if key != "general.architecture":
                out.append(encode_pair(key, entry.type, entry.value, entry.sub_type))
        return out
