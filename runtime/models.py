"""The runtime's read-only view of the store: a request's model name to what serving needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import INVALID_MODEL_NAME, ApiError
from toolchain.describe import capabilities
from toolchain.store import (
    InvalidNameError,
    ModelNotFoundError,
    Store,
    StoredModel,
    load_model,
    parse_name,
)
from toolchain.store.gguf_reader import GGUFInfo, read_gguf


@dataclass(frozen=True)
class ServedModel:
    """A stored model as the runtime serves it (paths as strings, derived facts cached)."""

    stored: StoredModel
    name: str  # the shortest display form, e.g. `smollm2:latest`
    full_name: str  # host/namespace/model:tag
    model_path: str
    adapter_paths: tuple[str, ...]
    capabilities: tuple[str, ...]
    chat_template: str  # the GGUF's own Jinja template ("" if none)

    @property
    def digest(self) -> str:
        return self.stored.digest

    @property
    def template(self) -> str | None:
        return self.stored.template

    @property
    def system(self) -> str:
        return self.stored.system

    @property
    def parameters(self) -> dict[str, Any]:
        return self.stored.parameters

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.stored.messages]

    @property
    def uses_jinja(self) -> bool:
        """No template layer but a GGUF chat template: prompts come from the Jinja fallback."""
        return self.template is None and bool(self.chat_template)

    def special_tokens(self) -> tuple[str, str]:
        return special_tokens(self.model_path, self.digest) if self.uses_jinja else ("", "")

    def details(self) -> dict[str, Any]:
        return self.stored.details(gguf_header(self.model_path, self.digest))


@functools.lru_cache(maxsize=32)
def gguf_header(path: str, digest: str) -> GGUFInfo | None:
    """The model GGUF's header; cached per manifest digest (reading it parses the vocab)."""
    del digest  # part of the cache key only
    try:
        return read_gguf(path)
    except Exception:
        return None


@functools.lru_cache(maxsize=8)
def special_tokens(path: str, digest: str) -> tuple[str, str]:
    """The BOS and EOS token texts of a GGUF vocabulary ("" when absent), for Jinja templates."""
    del digest  # part of the cache key only
    try:
        info = read_gguf(path, full_arrays=True)
    except Exception:
        return "", ""
    tokens = info.kv.get("tokenizer.ggml.tokens")
    items = getattr(tokens, "items", ())

    def text(key: str) -> str:
        i = info.kv.get(key)
        return str(items[i]) if isinstance(i, int) and 0 <= i < len(items) else ""

    return text("tokenizer.ggml.bos_token_id"), text("tokenizer.ggml.eos_token_id")


#: a manifest file as last seen: (mtime ns, size, inode)
Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Catalog:
    """Look models up in one store by the names requests carry.

    Resolving a name reads the store (every manifest's name, then the manifest and config
    blob): ~2 ms of the event loop per request, most of an embedding request's overhead
    over an in-process call. A name spelled exactly as stored is remembered with its
    manifest file's stamp and served from memory while the file is unchanged (an exact
    spelling wins over every other, so a model added later cannot change what it names);
    a rebuilt, pulled or removed model changes or removes the file.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._served: dict[str, tuple[Stamp, ServedModel]] = {}

    def parse(self, raw: str) -> None:
        """Raise the reference's 400 for a name that does not parse."""
        try:
            parse_name(raw)
        except InvalidNameError:
            raise ApiError(400, INVALID_MODEL_NAME) from None

    def stored(self, raw: str) -> StoredModel:
        """The stored model; InvalidNameError / ModelNotFoundError for the handler to map."""
        return load_model(self.store, raw)

    def get(self, raw: str, not_found: str) -> ServedModel:
        """The model a request names: 400 for an invalid name, 404 `not_found` if absent."""
        known = self._served.get(raw)
        if known is not None:
            stamp, served = known
            if _stamp(self.store.manifest_path(served.stored.name)) == stamp:
                return served
            del self._served[raw]
        self.parse(raw)
        path = self.store.manifest_path(parse_name(raw))
        before = _stamp(path)  # taken before reading: a change while reading shows later
        try:
            stored = self.stored(raw)
        except ModelNotFoundError:
            raise ApiError(404, not_found) from None
        served = self._served_model(stored)
        if before is not None and stored.name == parse_name(raw):
            if len(self._served) >= 256:
                self._served.clear()
            self._served[raw] = (before, served)
        return served

    def _served_model(self, stored: StoredModel) -> ServedModel:
        if stored.model_path is None:
            raise ApiError(400, f"{stored.name.display()} has no model weights")
        path = str(stored.model_path)
        header = gguf_header(path, stored.digest)
        return ServedModel(
            stored=stored,
            name=stored.name.display(),
            full_name=str(stored.name),
            model_path=path,
            adapter_paths=tuple(str(p) for p in stored.adapter_paths),
            capabilities=tuple(capabilities(stored, header)) if header else (),
            chat_template=header.chat_template if header else "",
        )
