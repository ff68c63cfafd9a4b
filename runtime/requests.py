"""Typed requests: a route's body, decoded once into a frozen dataclass.

A request class (in `runtime.schemas`) lists its fields once, each with the Go type the
reference's struct gives it: `prompt: str = go(STRING, "")`. `shape_of` derives from the
class the `GoType` struct that `runtime.jsonbody` binds a body against (Go's errors and
all), and `decode_request` turns the bound fields into an instance, so handlers read
attributes and a field exists in exactly one place. Nested values (messages, tools,
options) stay the plain JSON the templates and option parser take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from runtime.jsonbody import GoType, decode_async, struct

T = TypeVar("T")

_SHAPES: dict[type, GoType] = {}
_ATTRS: dict[type, dict[str, str]] = {}


def go(gotype: GoType, default: Any = None, *, json: str | None = None) -> Any:
    """A request field of Go type `gotype`, holding `default` when the body leaves it out
    or sends null; `json` is its key when that is no Python name (`from`)."""
    return dataclasses.field(default=default, metadata={"go": gotype, "json": json})


def json_key(f: dataclasses.Field[Any]) -> str:
    """The JSON key of a request field."""
    key: str | None = f.metadata.get("json")
    return key or f.name


def shape_of(cls: type, go_name: str | None = None) -> GoType:
    """The Go struct a body is bound against for request class `cls` (named `go_name` in
    Go's errors; the class name by default)."""
    if cls not in _SHAPES:
        fields = dataclasses.fields(cls)
        shape = {json_key(f): f.metadata["go"] for f in fields}
        _SHAPES[cls] = struct(go_name or cls.__name__, shape)
        _ATTRS[cls] = {json_key(f): f.name for f in fields}
    return _SHAPES[cls]


def bind(cls: type[T], decoded: dict[str, Any]) -> T:
    """The request `cls` holding the fields `jsonbody.decode` bound (keys are field keys)."""
    shape_of(cls)
    attrs = _ATTRS[cls]
    return cls(**{attrs[key]: value for key, value in decoded.items()})


async def decode_request(body: bytes | Sequence[bytes], cls: type[T]) -> T:
    """`body` decoded as Go binds it to the request's struct, as an instance of `cls`."""
    return bind(cls, await decode_async(body, shape_of(cls)))
