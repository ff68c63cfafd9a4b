"""Importance matrices: llama.cpp's GGUF imatrix format and the legacy `.dat` format.

`load_imatrix` returns what llama-quantize hands to the quantizer: per tensor, the mean
squared activation of each input column (sums divided by counts, per expert).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant.errors import QuantError
from quant.gguf_constants import GGUFValueType
from quant.gguf_read import MAGIC, GGUFFile, TensorInfo
from quant.gguf_values import GGUFArray
from quant.gguf_write import encode_pair, header_bytes, padded
from quant.numerics import F32, Floats

_SUMS, _COUNTS = ".in_sum2", ".counts"


@dataclass(frozen=True)
class Imatrix:
    """Per-tensor importance weights, as llama-quantize passes them to the library."""

    entries: dict[str, Floats]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    source: str = ""
    digest: str = field(default="", compare=False)

    def get(self, name: str) -> Floats | None:
        return self.entries.get(name)


def _digest(entries: Mapping[str, Floats]) -> str:
    import hashlib  # not at import: `mfc quantize` without an imatrix never needs it

    h = hashlib.sha256()
    for name in sorted(entries):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(entries[name], dtype="<f4").tobytes())
    return h.hexdigest()


def load_imatrix(path: str | Path) -> Imatrix:
    """Read an imatrix file in either format (GGUF is tried first, like llama.cpp)."""
    p = Path(path)
    try:
        head = p.read_bytes()[:4]
    except OSError as exc:
        raise QuantError(f"cannot read imatrix {p}: {exc.strerror or exc}") from exc
    entries, datasets, chunks = _load_gguf(p) if head == MAGIC else _load_dat(p)
    if not entries:
        raise QuantError(f"imatrix {p} has no entries")
    for name, values in entries.items():
        if not np.isfinite(values).all():
            raise QuantError(f"imatrix {p} has non-finite values for {name!r}", tensor=name)
    return Imatrix(entries, tuple(datasets), chunks, str(p), _digest(entries))


def _load_gguf(p: Path) -> tuple[dict[str, Floats], list[str], int]:
    with GGUFFile(p) as g:
        keys = set(g.header.kv)
        if not {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"} <= keys:
            raise QuantError(f"imatrix {p} has no imatrix metadata (datasets, chunk count/size)")
        names = g.full("imatrix.datasets")
        datasets = [str(d) for d in names.items] if isinstance(names, GGUFArray) else [str(names)]
        chunks = int(g.get("imatrix.chunk_count", 0))
        pairs: dict[str, dict[str, TensorInfo]] = {}
        for t in g.tensors:
            for suffix in (_SUMS, _COUNTS):
                if t.name.endswith(suffix):
                    pairs.setdefault(t.name[: -len(suffix)], {})[suffix] = t
        entries: dict[str, Floats] = {}
        for name in sorted(pairs):
            pair = pairs[name]
            if len(pair) != 2:
                raise QuantError(f"imatrix {p}: sums and counts do not match for {name!r}")
            if any(t.type_id != 0 for t in pair.values()):
                raise QuantError(f"imatrix {p}: sums and counts of {name!r} must be F32")
            sums_t, counts_t = pair[_SUMS], pair[_COUNTS]
            for t in (sums_t, counts_t):
                g.header.check_range(t, t.n_elements * 4)
            sums = g.read(sums_t, 0, sums_t.n_elements * 4).view("<f4").astype(F32)
            counts = g.read(counts_t, 0, counts_t.n_elements * 4).view("<f4")
            # `std::lround` then back to float, as common_imatrix_load does
            counts = np.sign(counts) * np.floor(np.abs(counts.astype(np.float64)) + 0.5)
            per = sums.size // max(1, counts.size)
            out = np.ones(sums.size, dtype=F32)
            for j, c in enumerate(counts.astype(F32)):
                if c > 0:
                    out[j * per : (j + 1) * per] = sums[j * per : (j + 1) * per] / c
            entries[name] = out
    return entries, datasets, chunks


def _load_dat(p: Path) -> tuple[dict[str, Floats], list[str], int]:
    data = p.read_bytes()
    bad = QuantError(
        f"{p} is not an imatrix file (neither GGUF nor the legacy .dat format)",
        hint="produce one with llama-imatrix",
    )
    try:
        (n_entries,) = struct.unpack_from("<i", data, 0)
        if n_entries < 1:
            raise bad
        pos = 4
        entries: dict[str, Floats] = {}
        for _ in range(n_entries):
            (length,) = struct.unpack_from("<i", data, pos)
            if length < 0 or pos + 4 + length > len(data):
                raise bad
            name = data[pos + 4 : pos + 4 + length].decode("utf-8", errors="replace")
            pos += 4 + length
            ncall, nval = struct.unpack_from("<ii", data, pos)
            pos += 8
            if nval < 1 or pos + 4 * nval > len(data):
                raise bad
            sums = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(F32)
            pos += 4 * nval
            entries[name] = (sums / F32(ncall)).astype(F32) if ncall > 0 else sums
        chunks, datasets = 0, []
        if pos + 4 <= len(data):
            (chunks,) = struct.unpack_from("<i", data, pos)
            if pos + 8 <= len(data):
                (length,) = struct.unpack_from("<i", data, pos + 4)
                if length > 0:
                    datasets.append(data[pos + 8 : pos + 8 + length].decode("utf-8", "replace"))
    except struct.error as exc:
        raise bad from exc
    return entries, datasets, chunks


def write_imatrix_gguf(
    path: str | Path,
    sums: Mapping[str, Floats],
    counts: Mapping[str, Floats],
    *,
    datasets: list[str],
    chunk_count: int,
    chunk_size: int,
) -> None:
    """Write sums of squared activations (nmat, ne0) and counts (nmat,) per tensor, laid
    out as llama-imatrix writes them."""
    kvs = [
        encode_pair("general.type", GGUFValueType.STRING, "imatrix"),
        encode_pair("imatrix.datasets", GGUFValueType.ARRAY, datasets, GGUFValueType.STRING),
        encode_pair("imatrix.chunk_count", GGUFValueType.UINT32, chunk_count),
        encode_pair("imatrix.chunk_size", GGUFValueType.UINT32, chunk_size),
    ]
    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(sums):
        s = np.asarray(sums[name], dtype="<f4")
        c = np.asarray(counts[name], dtype="<f4").reshape(-1)
        s = s.reshape(c.size, -1)
        for suffix, arr, ne in ((_SUMS, s, (s.shape[1], c.size)), (_COUNTS, c, (1, c.size))):
            dims = ne if ne[1] > 1 else ne[:1]
            infos.append((name + suffix, dims, 0, offset))
            blob = arr.tobytes()
            blobs.append(blob + bytes(padded(len(blob)) - len(blob)))
            offset += len(blobs[-1])
    Path(path).write_bytes(header_bytes(kvs, infos) + b"".join(blobs))


def write_imatrix_dat(
    path: str | Path,
    values: Mapping[str, Floats],
    ncall: Mapping[str, int],
    *,
    chunk_count: int,
    dataset: str,
) -> None:
    """Write the legacy format: per tensor `mean * ncall` and `ncall`, then the trailer."""
    parts = [struct.pack("<i", len(values))]
    for name in sorted(values):
        v = np.asarray(values[name], dtype=F32).reshape(-1)
        raw = name.encode()
        stored = (v * F32(ncall[name])).astype("<f4")
        parts.append(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall[name], v.size))
        parts.append(stored.tobytes())
    ds = dataset.encode()
    parts.append(struct.pack("<ii", chunk_count, len(ds)) + ds)
    Path(path).write_bytes(b"".join(parts))
