"""The pass cache: heavy passes (convert, quantize) remember their output blob by input.

Key = sha256 of the Go-JSON of (input digest, pass name, pass version, options); the entry,
`<store>/.mfc/cache/<key>.json`, names the output blob. Outputs are ordinary blobs, so a
hit whose blob is still in the store costs nothing: no tensor work, no new blob. A hit
whose blob was garbage-collected is a miss. Entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from toolchain.gojson import GoStruct, encode
from toolchain.store.blobs import is_digest
from toolchain.store.store import Store


@dataclass(frozen=True, slots=True)
class CacheEntry:
    digest: str
    size: int
    meta: dict[str, Any]


def cache_key(input_digest: str, pass_name: str, pass_version: int, options: dict[str, Any]) -> str:
    """The hex key of one pass application (options are encoded with sorted keys)."""
    payload = GoStruct(
        input=input_digest, **{"pass": pass_name}, version=pass_version, options=options
    )
    return hashlib.sha256(encode(payload)).hexdigest()


class PassCache:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.root / ".mfc" / "cache"

    def get(self, key: str) -> CacheEntry | None:
        """The cached output for `key` if its blob is still in the store, else None."""
        try:
            obj = json.loads((self.dir / f"{key}.json").read_text())
            digest = str(obj["digest"])
            size = int(obj["size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not is_digest(digest) or not self.store.blobs.exists(digest):
            return None
        self.store.blobs.touch(digest)
        meta = obj.get("meta")
        return CacheEntry(digest, size, meta if isinstance(meta, dict) else {})

    def put(self, key: str, digest: str, size: int, meta: dict[str, Any] | None = None) -> None:
        entry = GoStruct(digest=digest, size=size, meta=meta or {})
        self.store.write_file(self.dir / f"{key}.json", encode(entry))
