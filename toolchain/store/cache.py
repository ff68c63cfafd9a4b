"""The build cache's entries: which pass output (a blob) came from which input.

An entry, `<store>/.mfc/cache/<key>.json`, records the output blob of one heavy pass
application (convert, quantize) and what it is keyed on: the input digest (a blob, or a
folder's content digest), the pass name and version, and the options. Its file's mtime is
when it was last used (a hit touches it), which is what LRU eviction orders by.

Ownership, the one rule `rm`, `prune`, a rebuild and `mfc cache` share: an entry is *live*
while its output is used by a model, that is referenced by a manifest or the input of
another live entry (the F16 a quantized model was made from) or named by digest in its
options (the importance matrix it was quantized with). An orphan entry (its model
was removed or replaced) is swept with its blob; a live entry's blob is not garbage, only
`mfc cache prune` (by age or size, and the size cap after each build) evicts it. Blobs a
manifest references are never removed by the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.store.blobs import Blobs, is_digest
from toolchain.store.errors import StoreError
from toolchain.store.root import env_value

#: the default bound on the bytes the cache alone holds (`MFC_BUILD_CACHE_MAX_SIZE`)
DEFAULT_MAX_SIZE = 20 * 10**9


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    digest: str  # the output blob
    size: int
    input: str = ""  # the input digest ("" for entries written before it was recorded)
    pass_name: str = ""
    version: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    used: float = 0.0  # last use (the entry file's mtime)


def _entry_of(key: str, obj: Any, used: float) -> CacheEntry | None:
    if not isinstance(obj, dict):
        return None
    digest, size = obj.get("digest"), obj.get("size")
    if not isinstance(digest, str) or not is_digest(digest) or not isinstance(size, int):
        return None
    options, meta, version = obj.get("options"), obj.get("meta"), obj.get("version")
    return CacheEntry(
        key,
        digest,
        size,
        input=str(obj.get("input") or ""),
        pass_name=str(obj.get("pass") or ""),
        version=version if isinstance(version, int) else 0,
        options=options if isinstance(options, dict) else {},
        meta=meta if isinstance(meta, dict) else {},
        used=used,
    )


class BuildCache:
    """The `.mfc/cache/` folder of a store."""

    def __init__(self, root: Path, blobs: Blobs) -> None:
        self.dir = root / ".mfc" / "cache"
        self.blobs = blobs

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def read(self, key: str) -> CacheEntry | None:
        """The entry for `key` (None if absent or unreadable), whether or not its blob exists."""
        path = self.path(key)
        try:
            return _entry_of(key, json.loads(path.read_bytes()), path.stat().st_mtime)
        except (OSError, ValueError):
            return None

    def hit(self, key: str) -> CacheEntry | None:
        """The entry for `key` if its blob is still in the store, marked as used now."""
        entry = self.read(key)
        if entry is None or not self.blobs.exists(entry.digest):
            return None
        self.blobs.touch(entry.digest)
        with contextlib.suppress(OSError):
            os.utime(self.path(key))
        return entry

    def entries(self) -> list[CacheEntry]:
        """Every readable entry, most recently used first."""
        if not self.dir.is_dir():
            return []
        found = (self.read(p.stem) for p in self.dir.glob("*.json"))
        return sorted((e for e in found if e is not None), key=lambda e: (-e.used, e.key))

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def live(self, entries: Iterable[CacheEntry], refs: set[str]) -> set[str]:
        """Keys of the entries whose output a model uses (see the module docstring)."""
        pending = [e for e in entries if self.blobs.exists(e.digest)]
        used, live = set(refs), set()
        changed = True
        while changed:  # a chain is as long as the pipeline: a few rounds at most
            changed = False
            for e in pending:
                if e.key not in live and e.digest in used:
                    live.add(e.key)
                    for dep in (e.input, *e.options.values()):
                        if isinstance(dep, str) and is_digest(dep) and dep not in used:
                            used.add(dep)
                            changed = True
        return live

    def states(self, entries: list[CacheEntry], refs: set[str]) -> dict[str, str]:
        """Each entry's state by key: `model` (a manifest references its output), `cache`
        (live, holding bytes only the cache holds), `orphan` (swept by the next rm, prune
        or build) or `missing` (its blob is gone: a miss)."""
        live = self.live(entries, refs)
        return {
            e.key: "missing"
            if not self.blobs.exists(e.digest)
            else "model"
            if e.digest in refs
            else "cache"
            if e.key in live
            else "orphan"
            for e in entries
        }

    def _drop(self, entry: CacheEntry, keep: set[str]) -> int:
        """Remove an entry, and its blob unless in `keep`; the bytes freed."""
        self.remove(entry.key)
        try:
            size = self.blobs.size(entry.digest)
        except OSError:
            return 0
        return size if entry.digest not in keep and self.blobs.remove(entry.digest) else 0

    def sweep(self, refs: set[str]) -> Sweep:
        """Remove orphan entries and their output blobs no manifest references. The caller
        holds the store's exclusive lock."""
        entries = self.entries()
        live = self.live(entries, refs)
        held = {e.digest for e in entries if e.key in live}
        keep = refs | held
        removed, freed = [], 0
        for e in entries:
            if e.key not in live:
                n = self._drop(e, keep)
                if n:
                    removed.append(e.digest)
                    freed += n
        return Sweep(removed, freed, held)

    def evict(
        self,
        refs: set[str],
        *,
        older_than: float | None = None,
        max_size: int | None = None,
        now: float,
    ) -> Eviction:
        """Sweep orphans, then evict entries last used more than `older_than` seconds ago, and
        least-recently-used ones while the cache holds more than `max_size` bytes. Only
        entries holding bytes no model references are evicted (one whose output a model uses
        frees nothing). The caller holds the store's exclusive lock."""
        swept = self.sweep(refs)
        entries = [e for e in self.entries() if e.digest in swept.held - refs]
        total = sum(self.blobs.size(d) for d in {e.digest for e in entries})
        evicted, freed = [], swept.freed
        remaining = {e.key: e for e in entries}
        for e in reversed(entries):  # least recently used first
            too_old = older_than is not None and now - e.used > older_than
            if not too_old and (max_size is None or total <= max_size):
                continue
            del remaining[e.key]
            n = self._drop(e, refs | {o.digest for o in remaining.values()})
            total -= n
            freed += n
            evicted.append(e)
        return Eviction(evicted, swept.removed, freed)


@dataclass(frozen=True, slots=True)
class Sweep:
    removed: list[str]  # blobs of orphan entries
    freed: int
    held: set[str]  # blobs live entries hold


@dataclass(frozen=True, slots=True)
class Eviction:
    evicted: list[CacheEntry]
    swept: list[str]  # blobs of orphan entries removed first
    freed: int


def cache_size(entries: Iterable[CacheEntry], refs: set[str]) -> int:
    """The bytes the cache alone holds: distinct output blobs no manifest references."""
    return sum({e.digest: e.size for e in entries if e.digest not in refs}.values())


_SIZE_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """`10G`, `500MB`, `123` -> bytes (decimal units, as `mfc list` shows sizes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"invalid size {text!r} (use a number of bytes, or e.g. 500M, 10G)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])


def parse_age(text: str) -> float:
    """`7d`, `12h`, `30m`, `45s`, `2w` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise ValueError(f"invalid age {text!r} (use e.g. 45s, 30m, 12h, 7d, 2w)")
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def max_size_from_env() -> int:
    """`MFC_BUILD_CACHE_MAX_SIZE` (e.g. `10G`; `0` keeps no intermediates), else the default."""
    raw = env_value("MFC_BUILD_CACHE_MAX_SIZE")
    if not raw:
        return DEFAULT_MAX_SIZE
    try:
        return parse_size(raw)
    except ValueError as exc:
        raise StoreError(f"MFC_BUILD_CACHE_MAX_SIZE: {exc}") from None
