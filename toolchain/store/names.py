"""Model names: `host/namespace/model:tag`, parsed and validated as the reference does.

`parse_name("llama3")` is `registry.ollama.ai/library/llama3:latest`; every part must be
ASCII alphanumerics, `_`, `-`, `.` (and `:` in a host) with an alphanumeric or `_` first,
so `../x`, `a/b/c/d/e` and `m:` are rejected (store_api.md §1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

from toolchain.store.errors import InvalidNameError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_SCHEME = "https"
MISSING = "!MISSING!"  # an empty side of a separator; never valid

#: part -> (max length, extra characters allowed after the first)
_PARTS = {
    "host": (350, "_-.:"),
    "namespace": (80, "_-"),
    "model": (80, "_-."),
    "tag": (80, "_-."),
}


def _is_word_byte(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def valid_part(kind: str, s: str) -> bool:
    """Whether `s` is a valid host, namespace, model or tag (byte-wise ASCII rules)."""
    max_len, extra = _PARTS[kind]
    if not 1 <= len(s.encode("utf-8", "surrogatepass")) <= max_len:
        return False
    if not _is_word_byte(s[0]):
        return False
    return all(_is_word_byte(c) or c in extra for c in s[1:])


@dataclass(frozen=True, slots=True)
class ModelName:
    """A fully qualified model name."""

    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = DEFAULT_SCHEME

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def is_valid(self) -> bool:
        return all(valid_part(k, getattr(self, k)) for k in _PARTS)

    @property
    def on_default_registry(self) -> bool:
        """Whether the name has no registry host of its own (the reference's ollama.com)."""
        return self.host.lower() == DEFAULT_HOST

    def display(self) -> str:
        """The shortest form: `model:tag`, `ns/model:tag` or `host/ns/model:tag`."""
        if not self.on_default_registry:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        else:
            prefix = ""
        return f"{prefix}{self.model}:{self.tag}"

    def parts(self) -> tuple[str, str, str, str]:
        """The manifest path components below `manifests/`."""
        return (self.host, self.namespace, self.model, self.tag)

    def casefold_key(self) -> tuple[str, ...]:
        return tuple(p.lower() for p in self.parts())


def _cut_last(s: str, sep: str) -> tuple[str, str, bool]:
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or MISSING, s[i + len(sep) :] or MISSING, True


def parse_name_bare(s: str) -> tuple[str, str, str, str, str]:
    """`(scheme, host, namespace, model, tag)` with no defaults filled in (`ParseNameBare`)."""
    host = namespace = tag = scheme = ""
    if s.rfind(":") > s.rfind("/"):
        s, tag, _ = _cut_last(s, ":")
    s, model, cut = _cut_last(s, "/")
    if not cut:
        return scheme, host, namespace, s, tag
    s, namespace, cut = _cut_last(s, "/")
    if not cut:
        return scheme, host, s, model, tag
    before, sep, after = s.partition("://")
    if sep:
        scheme, host = before, after
    else:
        host = s
    return scheme, host, namespace, model, tag


def parse_name(s: str) -> ModelName:
    """Parse `s` with the defaults merged in; raises `InvalidNameError` unless fully valid."""
    name = parse_name_lenient(s)
    if not name.is_valid:
        raise InvalidNameError(
            f"invalid model name: {s!r}",
            hint="a name is [host/][namespace/]model[:tag]; each part starts with a letter, "
            "digit or _ and has only letters, digits, _, - and . (e.g. mymodel:v1)",
        )
    return name


def parse_name_lenient(s: str) -> ModelName:
    """Parse with defaults merged in, without validating (check `.is_valid`)."""
    scheme, host, namespace, model, tag = parse_name_bare(s)
    return ModelName(
        host=host or DEFAULT_HOST,
        namespace=namespace or DEFAULT_NAMESPACE,
        model=model,
        tag=tag or DEFAULT_TAG,
        scheme=scheme or DEFAULT_SCHEME,
    )


def name_from_parts(parts: tuple[str, ...] | list[str]) -> ModelName | None:
    """The name a manifest path `host/namespace/model/tag` stands for, or None if invalid."""
    if len(parts) != 4:
        return None
    name = ModelName(parts[0], parts[1], parts[2], parts[3])
    return name if name.is_valid else None
