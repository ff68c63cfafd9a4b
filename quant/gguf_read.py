"""The one GGUF reader: the header (metadata and tensor table) and, on request, tensor bytes.

Every part of mfc that reads a GGUF reads it here: the store and `mfc inspect` (header
only), the build (the checks a FROM or ADAPTER file must pass), the LoRA converter (a base
model's shapes) and the quantizer (the header plus tensor bytes by range).

Not gguf-py's `GGUFReader`: it builds a numpy view for every part of every array item.
On SmolLM2-135M (49 152 tokens, 48 900 merges) it made 245 408 of them and took 26.7 s,
where this reader took 0.11 s for the header (1.1 s with every array decoded), measured
on the shared 2-core machine (bench: best of 2-5 runs; absolute times there are noisy,
the ratio is not). `mfc list`/`show` and every build read headers, so that cost would be
paid on each call. It also recurses into nested arrays without a bound (a crafted
2 000-deep array is a `RecursionError`) and reports a cut-short file as a numpy
`ValueError`. gguf-py still provides the type enums and block sizes.

Arrays longer than `ARRAY_HEAD` keep their first items only, unless `full_arrays` (a
vocabulary is skipped, not decoded); the whole array is one `full()` away. Each pair's
encoded bytes stay addressable, so the quantizer copies them to its output unchanged.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant import gguf_constants
from quant.files import not_regular
from quant.gguf_constants import GGUFValueType
from quant.gguf_values import (
    CUT_HINT,
    GGUFFormatError,
    NotGGUFError,
    ValueCursor,
)

MAGIC = b"GGUF"
MAX_DIMS = 4
#: arrays longer than this keep only their first items unless `full_arrays`
ARRAY_HEAD = 8
DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    type_id: int
    offset: int  # relative to the data section
    index: int  # position in the file

    @property
    def type_name(self) -> str:
        try:
            return gguf_constants.GGMLQuantizationType(self.type_id).name
        except ValueError:
            return f"type{self.type_id}"

    @property
    def n_dims(self) -> int:
        """`ggml_n_dims`: trailing dimensions of 1 do not count."""
        for i in range(len(self.ne) - 1, 0, -1):
            if self.ne[i] > 1:
                return i + 1
        return 1

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def nrows(self) -> int:
        return self.n_elements // self.ne[0] if self.ne[0] else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the data, from the block size and block bytes of the type."""
        try:
            qtype = gguf_constants.GGMLQuantizationType(self.type_id)
            block, block_bytes = gguf_constants.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GGUFFormatError(
                f"tensor {self.name!r} has unknown type {self.type_id}", tensor=self.name
            ) from None
        return self.n_elements // block * block_bytes


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """A GGUF's header: metadata in file order, tensor infos, and where the data starts."""

    path: str
    version: int
    byte_order: str  # "<" or ">"
    kv: dict[str, Any]
    types: dict[str, GGUFValueType]
    spans: dict[str, tuple[int, int]]  # key -> [start, end) of the encoded pair in the file
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.kv.get(key, default)

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

    def arch_key(self, key: str) -> str:
        return f"{self.architecture}.{key}"

    @property
    def parameter_count(self) -> int:
        """Sum of the tensors' element counts (what the reference reports, whatever the KV says)."""
        return sum(t.n_elements for t in self.tensors)

    def check_range(self, t: TensorInfo, nbytes: int | None = None) -> None:
        """Refuse a tensor whose data (`nbytes`, else its type's size) ends past the file."""
        end = self.data_offset + t.offset + (t.nbytes if nbytes is None else nbytes)
        if end > self.file_size:
            raise GGUFFormatError(
                f"{self.path}: truncated GGUF: tensor {t.name!r} ends at byte {end} but the "
                f"file has {self.file_size} bytes",
                tensor=t.name,
                hint=CUT_HINT,
            )

    def check_tensors(self) -> None:
        """Every tensor has a known type and lies inside the file (a cut download fails)."""
        for t in self.tensors:
            try:
                nbytes = t.nbytes
            except GGUFFormatError as exc:
                raise GGUFFormatError(f"{self.path}: {exc.message}", tensor=t.name) from None
            self.check_range(t, nbytes)


def read_header(path: str | os.PathLike[str], *, full_arrays: bool = False) -> GGUFHeader:
    """A GGUF file's header; `GGUFFormatError` for a non-GGUF, truncated or malformed file."""
    with _open_map(str(path)) as buf:
        return _parse_checked(buf, str(path), full_arrays)


def _open_map(p: str) -> mmap.mmap:
    problem = not_regular(Path(p))  # a FIFO or a device would block or never end
    if problem == "not a regular file (a directory)":
        raise GGUFFormatError(f"{p}: is a directory, not a GGUF file")
    if problem is not None:
        raise GGUFFormatError(f"{p}: {problem}")
    try:
        with Path(p).open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 4:
                raise NotGGUFError(f"{p}: not a GGUF file (it has {size} bytes)")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise GGUFFormatError(f"{p}: cannot read: {exc.strerror or exc}") from None


def _parse_checked(buf: mmap.mmap, path: str, full_arrays: bool) -> GGUFHeader:
    try:
        return _parse(buf, path, full_arrays)
    except (UnicodeDecodeError, struct.error, OverflowError, MemoryError) as exc:
        raise GGUFFormatError(f"{path}: malformed GGUF: {exc}") from None


def _parse(buf: mmap.mmap, path: str, full_arrays: bool) -> GGUFHeader:
    magic = buf[:4]
    if magic != MAGIC:
        raise NotGGUFError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    r = ValueCursor(buf, path, "<", 4)
    version = r.u32()
    if version and not version & 0xFFFF:  # the magic is bytes; a big-endian file's version
        r.order, version = ">", int.from_bytes(version.to_bytes(4, "little"), "big")
    if version not in (2, 3):
        raise GGUFFormatError(f"{path}: unsupported GGUF version {version} (2 and 3 are supported)")
    n_tensors, n_kv = r.u64(), r.u64()
    keep = None if full_arrays else ARRAY_HEAD
    kv: dict[str, Any] = {}
    types: dict[str, GGUFValueType] = {}
    spans: dict[str, tuple[int, int]] = {}
    for _ in range(n_kv):
        start = r.pos
        key = r.string()
        vtype = r.u32()
        try:
            types[key] = GGUFValueType(vtype)
        except ValueError:
            raise GGUFFormatError(
                f"{path}: malformed GGUF: key {key!r} has unknown type {vtype}"
            ) from None
        kv[key] = r.value(vtype, keep)
        spans[key] = (start, r.pos)
    tensors = []
    for index in range(n_tensors):
        name = r.string()
        dims = r.u32()
        if dims > MAX_DIMS:
            raise GGUFFormatError(f"{path}: malformed GGUF: tensor {name!r} has {dims} dimensions")
        ne = tuple(r.u64() for _ in range(dims))
        tensors.append(TensorInfo(name, ne, r.u32(), r.u64(), index))
    alignment = (
        int(kv["general.alignment"])
        if types.get("general.alignment") == GGUFValueType.UINT32
        else DEFAULT_ALIGNMENT
    )
    if alignment == 0:
        raise GGUFFormatError(f"{path}: malformed GGUF: general.alignment is 0")
    return GGUFHeader(
        path,
        version,
        r.order,
        kv,
        types,
        spans,
        tuple(tensors),
        alignment,
        -(-r.pos // alignment) * alignment,
        len(buf),
    )


class GGUFFile:
    """A GGUF open for reading tensor bytes (little-endian only, as ggml reads them)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._map = _open_map(str(path))
        try:
            self.header = _parse_checked(self._map, str(path), False)
        except BaseException:
            self.close()
            raise
        if self.header.byte_order != "<":
            self.close()
            raise GGUFFormatError(
                f"{path}: a big-endian GGUF cannot be read here",
                hint="convert the model again on a little-endian machine",
            )
        self.tensors = self.header.tensors
        self.data_start = self.header.data_offset

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)

    def encoded(self, key: str) -> bytes:
        """The pair `key` exactly as the file encodes it (key, type and value)."""
        start, end = self.header.spans[key]
        return self._map[start:end]

    def full(self, key: str) -> Any:
        """The value of `key` with arrays decoded whole."""
        r = ValueCursor(self._map, str(self.path), "<", self.header.spans[key][0])
        r.string()
        return r.value(r.u32(), None)

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
