"""GGUF key/value metadata with explicit types, collected in write order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGUFValueType, GGUFWriter


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

    def write_to(self, writer: GGUFWriter) -> None:
        for key, entry in self._items.items():
            if key == "general.architecture":
                continue  # GGUFWriter writes it first on its own
            if entry.type is GGUFValueType.ARRAY:
                writer.add_key_value(key, _packable(entry), entry.type, entry.sub_type)
            else:
                writer.add_key_value(key, entry.value, entry.type)


def _packable(entry: Entry) -> Sequence[Any]:
    """Arrays as sequences of plain Python scalars, which gguf's packer expects."""
    value = entry.value
    if isinstance(value, np.ndarray):
        return list(value.tolist())
    return list(value)
