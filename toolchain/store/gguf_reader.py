"""A small GGUF header reader: metadata, tensor table, and the checks a build needs.

It reads only the header (key/values and tensor infos) with buffered reads and never maps
tensor data, so it is fast on multi-gigabyte files. It checks what the reference's decoder
checks: the magic, the version, every tensor lying inside the file (a truncated download is
caught here), and an alignment that is not zero.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from quant.files import not_regular
from toolchain.errors import MfcError

MAGIC = b"GGUF"
MAX_DIMS = 4
#: arrays longer than this keep only their first items unless `full_arrays`
ARRAY_HEAD = 8
#: arrays of arrays deeper than this are refused (llama.cpp reads no nested array at all)
MAX_ARRAY_DEPTH = 32

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


class GGUFError(MfcError):
    """A file that is not a GGUF, or a GGUF that is truncated or malformed."""


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """An array value: its item type, its length, and its items (all, or the first few)."""

    item_type: GGUFValueType
    length: int
    items: tuple[Any, ...]

    @property
    def complete(self) -> bool:
        return len(self.items) == self.length


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: ne0 first
    type_id: int
    offset: int  # relative to the data section
    nbytes: int

    @property
    def type_name(self) -> str:
        try:
            return GGMLQuantizationType(self.type_id).name
        except ValueError:
            return f"type{self.type_id}"

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    path: str
    version: int
    byte_order: str  # "<" or ">"
    kv: dict[str, Any]
    types: dict[str, GGUFValueType]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int
    extras: dict[str, Any] = field(default_factory=dict)

    def get_str(self, key: str, default: str = "") -> str:
        v = self.kv.get(key)
        return v if isinstance(v, str) else default

    def get_uint32(self, key: str, default: int = 0) -> int:
        """The value if the key holds a uint32 (the reference's typed lookup), else `default`."""
        if self.types.get(key) == GGUFValueType.UINT32:
            return int(self.kv[key])
        return default

    def get_bool(self, key: str) -> bool:
        return self.types.get(key) == GGUFValueType.BOOL and bool(self.kv[key])

    @property
    def architecture(self) -> str:
        return self.get_str("general.architecture", "unknown")

    @property
    def kind(self) -> str:
        """`general.type`: model, adapter, projector, mmproj ... (`unknown` if absent)."""
        return self.get_str("general.type", "unknown")

    def arch_key(self, key: str) -> str:
        return f"{self.architecture}.{key}"

    @property
    def parameter_count(self) -> int:
        """Sum of the tensors' element counts (what the reference reports, whatever the KV says)."""
        return sum(t.elements for t in self.tensors)

    @property
    def chat_template(self) -> str:
        return self.get_str("tokenizer.chat_template")

    @property
    def is_projector(self) -> bool:
        if self.kind in ("projector", "mmproj"):
            return True
        blocks = self.get_uint32(self.arch_key("block_count"))
        if blocks == 0 and self.get_uint32(self.arch_key("vision.block_count")) > 0:
            return True
        return (
            self.architecture == "clip"
            and blocks == 0
            and (
                self.get_bool(self.arch_key("has_vision_encoder"))
                or self.get_bool(self.arch_key("has_audio_encoder"))
            )
        )

    @property
    def is_lora_adapter(self) -> bool:
        return self.kind == "adapter" and self.get_str("adapter.type") == "lora"


class _Reader:
    """Reads the header from a memory map of the file (tensor data is never touched)."""

    def __init__(self, buf: mmap.mmap, path: str, order: str) -> None:
        self.buf = buf
        self.size = len(buf)
        self.path = path
        self.order = order
        self.pos = 0

    def _need(self, n: int) -> None:
        if self.pos + n > self.size:
            raise GGUFError(
                f"{self.path}: truncated GGUF: the file ends inside its header "
                f"(at byte {self.size})",
                hint="the file was probably cut short while downloading or copying; fetch it again",
            )

    def read(self, n: int) -> bytes:
        self._need(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        self._need(n)
        self.pos += n

    def _unpack(self, fmt: str, size: int) -> Any:
        self._need(size)
        value = struct.unpack_from(self.order + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def scalar(self, vtype: int) -> Any:
        fmt, size = _SCALARS[vtype]
        return self._unpack(fmt, size)

    def u32(self) -> int:
        return int(self._unpack("I", 4))

    def u64(self) -> int:
        return int(self._unpack("Q", 8))

    def string(self) -> str:
        n = self.u64()
        if n > 1 << 32:
            raise GGUFError(f"{self.path}: malformed GGUF: string of {n} bytes at byte {self.pos}")
        return self.read(n).decode("utf-8", "replace")

    def value(self, vtype: int, full_arrays: bool, depth: int = 0) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise GGUFError(f"{self.path}: malformed GGUF: arrays nested more than "
                                f"{MAX_ARRAY_DEPTH} deep at byte {self.pos}")
            return self.array(full_arrays, depth + 1)
        if vtype not in _SCALARS:
            raise GGUFError(f"{self.path}: malformed GGUF: unknown value type {vtype}")
        return self.scalar(vtype)

    def array(self, full_arrays: bool, depth: int) -> GGUFArray:
        item_type = self.u32()
        length = self.u64()
        if item_type not in _SCALARS and item_type not in (
            GGUFValueType.STRING,
            GGUFValueType.ARRAY,
        ):
            raise GGUFError(f"{self.path}: malformed GGUF: array of unknown type {item_type}")
        keep = length if full_arrays else min(length, ARRAY_HEAD)
        if item_type in _SCALARS:
            fmt, size = _SCALARS[item_type]
            head = struct.unpack(f"{self.order}{keep}{fmt}", self.read(keep * size)) if keep else ()
            self.skip((length - keep) * size)
            return GGUFArray(GGUFValueType(item_type), length, tuple(head))
        items = [self.value(item_type, full_arrays, depth) for _ in range(keep)]
        if item_type == GGUFValueType.STRING:
            for _ in range(length - keep):  # skipped, not decoded: vocabularies are large
                self.skip(self.u64())
        else:
            for _ in range(length - keep):
                self.value(item_type, full_arrays, depth)
        return GGUFArray(GGUFValueType(item_type), length, tuple(items))


def tensor_nbytes(type_id: int, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor's data, from the block size and block bytes of its type."""
    try:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError):
        raise GGUFError(f"unknown tensor type {type_id}") from None
    elements = 1
    for d in shape:
        elements *= d
    return elements // block * block_bytes


def sniff_gguf(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts with the GGUF magic (either byte order)."""
    with Path(path).open("rb") as f:
        head = f.read(4)
    return head in (MAGIC, MAGIC[::-1])


def read_gguf(path: str | os.PathLike[str], *, full_arrays: bool = False) -> GGUFInfo:
    """Read a GGUF file's header; raises `GGUFError` for a non-GGUF, truncated or malformed file."""
    p = str(path)
    problem = not_regular(Path(p))  # a FIFO or a device would block or never end
    if problem == "not a regular file (a directory)":
        raise GGUFError(f"{p}: is a directory, not a GGUF file")
    if problem is not None:
        raise GGUFError(f"{p}: {problem}")
    try:
        with Path(p).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 4:
                raise GGUFError(f"{p}: not a GGUF file (it has {size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _read(buf, p, full_arrays)
    except IsADirectoryError:
        raise GGUFError(f"{p}: is a directory, not a GGUF file") from None
    except FileNotFoundError:
        raise GGUFError(f"{p}: no such file") from None
    except (UnicodeDecodeError, struct.error, OverflowError, MemoryError) as exc:
        raise GGUFError(f"{p}: malformed GGUF: {exc}") from None


def _read(buf: mmap.mmap, path: str, full_arrays: bool) -> GGUFInfo:
    magic = buf[:4]
    if magic == MAGIC:
        order = "<"
    elif magic == MAGIC[::-1]:
        order = ">"
    else:
        raise GGUFError(
            f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')",
            hint="FROM and ADAPTER take a .gguf file, a folder holding one, or a model name",
        )
    r = _Reader(buf, path, order)
    r.pos = 4
    version = r.u32()
    if version not in (2, 3):
        raise GGUFError(f"{path}: unsupported GGUF version {version} (2 and 3 are supported)")
    n_tensors = r.u64()
    n_kv = r.u64()
    kv: dict[str, Any] = {}
    types: dict[str, GGUFValueType] = {}
    for _ in range(n_kv):
        key = r.string()
        vtype = r.u32()
        try:
            types[key] = GGUFValueType(vtype)
        except ValueError:
            raise GGUFError(
                f"{path}: malformed GGUF: key {key!r} has unknown type {vtype}"
            ) from None
        kv[key] = r.value(vtype, full_arrays)
    tensors: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = r.string()
        dims = r.u32()
        if dims > MAX_DIMS:
            raise GGUFError(f"{path}: malformed GGUF: tensor {name!r} has {dims} dimensions")
        shape = tuple(r.u64() for _ in range(dims))
        tensors.append((name, shape, r.u32(), r.u64()))
    alignment = (
        kv.get("general.alignment", 32)
        if types.get("general.alignment") == GGUFValueType.UINT32
        else 32
    )
    if alignment == 0:
        raise GGUFError(f"{path}: malformed GGUF: general.alignment is 0")
    data_offset = -(-r.pos // alignment) * alignment
    file_size = len(buf)
    infos = []
    for name, shape, type_id, offset in tensors:
        try:
            nbytes = tensor_nbytes(type_id, shape)
        except GGUFError:
            raise GGUFError(f"{path}: tensor {name!r} has unknown type {type_id}") from None
        end = data_offset + offset + nbytes
        if end > file_size:
            raise GGUFError(
                f"{path}: truncated GGUF: tensor {name!r} ends at byte {end} but the file has "
                f"{file_size} bytes",
                hint="the file was probably cut short while downloading or copying; fetch it again",
            )
        infos.append(TensorInfo(name, shape, type_id, offset, nbytes))
    return GGUFInfo(
        path=path,
        version=version,
        byte_order=order,
        kv=kv,
        types=types,
        tensors=tuple(infos),
        alignment=int(alignment),
        data_offset=data_offset,
        file_size=file_size,
    )
