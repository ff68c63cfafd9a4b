"""The pass cache's keys and entries: the one place a heavy pass's output is looked up.

Key = sha256 of the Go-JSON of (input digest, pass name, pass version, options), the name
and version read from the pass's `Pass` (bump its version when its output bytes change).
The entry, `<store>/.mfc/cache/<key>.json`, names the output blob and records what the key
was made of, for `mfc cache`; what the store does with entries (ownership, sweeping,
eviction) is `toolchain.store.cache`. A hit whose blob was removed is a miss.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from toolchain.gojson import GoStruct, encode
from toolchain.store.cache import CacheEntry
from toolchain.store.store import Store


def cache_key(input_digest: str, pass_name: str, pass_version: int, options: dict[str, Any]) -> str:
    """The hex key of one pass application (options are encoded with sorted keys)."""
    payload = GoStruct(
        input=input_digest, **{"pass": pass_name}, version=pass_version, options=options
    )
    return hashlib.sha256(encode(payload)).hexdigest()


@dataclass(frozen=True, slots=True)
class PassKey:
    """One application of a pass: what its cache key is made of."""

    input: str
    pass_name: str
    version: int
    options: dict[str, Any]

    @property
    def key(self) -> str:
        return cache_key(self.input, self.pass_name, self.version, self.options)


def lookup(store: Store, key: PassKey) -> CacheEntry | None:
    """The cached output of `key` if its blob is still in the store (marked used now)."""
    return store.cache.hit(key.key)


def record(store: Store, key: PassKey, digest: str, size: int, meta: dict[str, Any]) -> None:
    """Write the entry for `key` atomically (the caller holds the store's shared lock)."""
    entry = GoStruct(
        digest=digest,
        size=size,
        input=key.input,
        **{"pass": key.pass_name},
        version=key.version,
        options=key.options,
        meta=meta,
    )
    store.write_file(store.cache.path(key.key), encode(entry))
