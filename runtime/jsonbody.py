"""Decode request bodies the way the reference's Go server does, errors included.

The reference binds every body with Go's `encoding/json` Decoder, so clients see Go's
messages: `invalid character 'x' looking for beginning of value`, `unexpected EOF`,
`json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string`.
Request shapes are declared as data (`Struct`, `Slice`, `Map`, scalars); `decode` checks a
body against one: Python's C decoder parses it (the Go scanner in `runtime.jsonscan` only
explains what it rejects), then a walk mirrors Go's type rules (keys match fields
case-insensitively, `null` leaves a field unset, the first type error wins unless a custom
field decoder fails, numbers out of a field's range are type errors). `decode_async` does all
of it off the event loop and out of the server's process for bodies of any size.

Limits (README "Server limits"): nesting 10000 levels (Go's), MAX_VALUES values per body,
MAX_VALUE_DEPTH levels inside the `any` fields a handler keeps.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from runtime.errors import MISSING_BODY, ApiError
from runtime.jsonscan import JsonSyntaxError, Scanner, TooManyValuesError, build
from toolchain.gojson import loads, replace_lone_surrogates

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
#: A body may hold at most this many JSON values (numbers, strings, arrays, ...): decoded,
#: each costs tens of bytes, so this bounds what one request can make the server allocate.
MAX_VALUES = 1 << 20
#: `any` fields a handler keeps (format, tool parameters, options) may nest this deep.
MAX_VALUE_DEPTH = 128
#: Bodies up to this size that Python's C decoder takes decode on the event loop (well
#: under a millisecond).
INLINE_BYTES = 16 << 10
#: Other bodies decode in worker processes, this many at a time (bounds their memory).
DECODE_THREADS = 2


class Number(float):
    """A JSON number that remembers its literal (Go reports `number 1.5` for int fields)."""

    __slots__ = ("literal",)
    literal: str

    def __new__(cls, literal: str) -> Number:
        obj = super().__new__(cls, float(literal))
        obj.literal = literal
        return obj


def _parse_int(literal: str) -> Any:
    # past int64's 19 digits Go reports the literal; int() would also stop at 4300 digits
    return int(literal) if len(literal) <= 20 else Number(literal)


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON to Go: let the scanner say why


def _go_error(body: bytes, max_values: int | None = None) -> tuple[int, int]:
    """Scan `body` as Go does: ApiError(400) with Go's message for the first syntax error,
    else the (start, end) of its first value."""
    scanner = Scanner(body, max_values)
    try:
        scanner.skip_space()
    except JsonSyntaxError:
        raise ApiError(400, MISSING_BODY) from None
    begin = scanner.i
    try:
        scanner.value()
    except JsonSyntaxError as exc:
        raise ApiError(400, exc.message) from None
    except TooManyValuesError:
        raise ApiError(400, f"request body holds more than {MAX_VALUES} JSON values") from None
    return begin, scanner.i


def parse_json(body: bytes, exact: bool = False) -> Any:
    """The first JSON value of `body`, or ApiError(400) with Go's Decoder message.

    Python's C decoder does the work; the Go scanner runs only when it fails (to find Go's
    message, trailing data, nesting past Python's recursion limit), when the body may hold
    more than MAX_VALUES values (each costs tens of bytes once decoded), or when `exact`
    asks for floats that keep their literal (`Number`) and integers of any length.
    """
    if body.count(b",") + body.count(b"[") + body.count(b"{") >= MAX_VALUES:
        _go_error(body, MAX_VALUES)
    if not exact:
        try:
            # invalid UTF-8 becomes U+FFFD, as in Go's decoder; so do lone surrogate escapes,
            # which need a `\u` (a cheaper test than gojson.loads's regex over the text)
            value = json.loads(body.decode("utf-8", errors="replace"), parse_constant=_no_constants)
            if b"\\u" in body and _SURROGATE_ESCAPE.search(body):
                value = replace_lone_surrogates(value)
            return value
        except (ValueError, RecursionError):
            pass
    begin, end = _go_error(body)
    text = body[begin:end].decode("utf-8", errors="replace")
    try:
        return loads(text, parse_float=Number, parse_int=_parse_int)
    except RecursionError:  # valid, but deeper than the C decoder goes
        return build(text, _parse_int, Number, replace_lone_surrogates)


# --- Go types ------------------------------------------------------------------------

Decoder = Callable[[Any], Any]


@dataclass(frozen=True)
class GoType:
    """A Go type a JSON value is decoded into; `name` is how Go prints it in errors."""

    name: str
    kind: str  # string | bool | int | float | any | slice | map | struct | custom
    elem: GoType | None = None
    fields: Mapping[str, GoType] = field(default_factory=dict)
    custom: Decoder | None = None


STRING = GoType("string", "string")
BOOL = GoType("bool", "bool")
INT = GoType("int", "int")
FLOAT = GoType("float64", "float")
ANY = GoType("interface {}", "any")


def slice_of(elem: GoType, name: str | None = None) -> GoType:
    return GoType(name or f"[]{elem.name}", "slice", elem=elem)


def map_of(elem: GoType) -> GoType:
    return GoType(f"map[string]{elem.name}", "map", elem=elem)


def struct(name: str, fields: Mapping[str, GoType]) -> GoType:
    return GoType(name, "struct", fields=fields)


def custom(name: str, decoder: Decoder) -> GoType:
    """A field with its own UnmarshalJSON: `decoder` returns the value or raises ApiError."""
    return GoType(name, "custom", custom=decoder)


def go_type_name(value: Any) -> str:
    """How Go's `%T` names a decoded JSON value (`float64`, `[]interface {}`, ...)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "[]interface {}" if isinstance(value, list) else "map[string]interface {}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _TypeErrors:
    def __init__(self, top: str) -> None:
        self.top = top
        self.first: str | None = None

    def add(self, value_desc: str, path: list[str], gotype: GoType) -> None:
        if self.first is not None:
            return
        if path:
            where = f"Go struct field {self.top}.{'.'.join(path)} of type {gotype.name}"
        else:
            where = f"Go value of type api.{self.top}"
        self.first = f"json: cannot unmarshal {value_desc} into {where}"


def _decode(value: Any, t: GoType, path: list[str], errs: _TypeErrors) -> Any:
    if value is None:
        return None
    kind = t.kind
    if kind == "custom":
        assert t.custom is not None
        literal = _overflow(value)
        if literal is not None:
            # Go's Unmarshaler decodes into any: a float64 overflow, returned at once
            where = ".".join([errs.top, *path])
            raise ApiError(
                400,
                f"json: cannot unmarshal number {literal} into Go struct field {where} "
                "of type float64",
            )
        return t.custom(value)
    if kind == "any":
        return _checked_any(value, path, errs, t)
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            if -_INT64 <= value < _INT64:
                return value
            errs.add(f"number {value}", path, t)
            return None
        if isinstance(value, float):
            errs.add(f"number {_literal(value)}", path, t)
            return None
    elif kind == "float":
        literal = _overflow(value)
        if literal is not None:
            errs.add(f"number {literal}", path, t)
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "slice":
        if isinstance(value, list):
            assert t.elem is not None
            return [_decode(v, t.elem, path, errs) for v in value]
    elif kind == "map":
        if isinstance(value, dict):
            assert t.elem is not None
            return {k: _decode(v, t.elem, path, errs) for k, v in value.items()}
    elif kind == "struct" and isinstance(value, dict):
        return _decode_struct(value, t, path, errs)
    errs.add(_json_kind(value), path, t)
    return None


_INT64 = 1 << 63


class _NeedLiteralsError(Exception):
    """A message must quote a float's literal: decode again, keeping literals."""


def _literal(value: float) -> str:
    literal: str | None = getattr(value, "literal", None)
    if literal is None:
        raise _NeedLiteralsError
    return literal


def _overflow(value: Any) -> str | None:
    """The literal of a number Go cannot hold in a float64 (`1e999`), else None."""
    if isinstance(value, float):
        return _literal(value) if math.isinf(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1000:
        try:
            float(value)
        except OverflowError:
            return str(value)
    return None


def _checked_any(value: Any, path: list[str], errs: _TypeErrors, t: GoType) -> Any:
    """An `interface {}` value: Go's float64 overflow errors, and our nesting limit."""
    if not isinstance(value, dict | list):
        literal = _overflow(value)
        if literal is not None:
            errs.add(f"number {literal}", path, FLOAT)
            return None
        return value
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_VALUE_DEPTH:
            errs.add(f"value nested deeper than {MAX_VALUE_DEPTH} levels", path, t)
            return None
        for v in item.values() if isinstance(item, dict) else item:
            if isinstance(v, dict | list):
                todo.append((v, depth + 1))
            elif isinstance(v, int | float) and (literal := _overflow(v)) is not None:
                errs.add(f"number {literal}", path, FLOAT)
                return None
    return value


def _decode_struct(
    obj: dict[str, Any], t: GoType, path: list[str], errs: _TypeErrors
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    folded = {name.casefold(): name for name in t.fields}
    for key, value in obj.items():
        # Go prefers an exact field name, then a case-insensitive match; others are ignored.
        name = key if key in t.fields else folded.get(key.casefold())
        if name is None:
            continue
        decoded = _decode(value, t.fields[name], [*path, name], errs)
        if decoded is not None:
            out[name] = decoded
        elif value is None:
            out.pop(name, None)
    return out


def decode(body: bytes, shape: GoType) -> dict[str, Any]:
    """Bind `body` to the struct `shape`: the fields present (None/null ones left out).

    Raises ApiError(400) with the message Go's Decoder would give.
    """
    try:
        return _bind(parse_json(body), shape)
    except _NeedLiteralsError:
        return _bind(parse_json(body, exact=True), shape)


def _bind(value: Any, shape: GoType) -> dict[str, Any]:
    errs = _TypeErrors(shape.name)
    if not isinstance(value, dict):
        errs.add(_json_kind(value) if value is not None else "null", [], shape)
        if value is None:
            return {}
        raise ApiError(400, errs.first or "")
    out = _decode_struct(value, shape, [], errs)
    if errs.first is not None:
        raise ApiError(400, errs.first)
    return out


_decoding: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _decode_quick(body: bytes, shape: GoType) -> dict[str, Any] | None:
    """`decode` if Python's C decoder alone does it (a small body: well under a millisecond);
    None when the Go scanner has to explain the body or literals must be kept."""
    try:
        value = json.loads(body.decode("utf-8", errors="replace"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    if b"\\u" in body and _SURROGATE_ESCAPE.search(body):
        value = replace_lone_surrogates(value)
    try:
        return _bind(value, shape)
    except _NeedLiteralsError:
        return None


async def decode_async(body: bytes | Sequence[bytes], shape: GoType) -> dict[str, Any]:
    """`decode` of `body` (or of its chunks, concatenated), never holding the GIL for long.

    A small body that Python's C decoder takes is decoded here; any other goes to a worker
    process (`runtime.decodepool`), at most DECODE_THREADS at once (bounding their memory).
    """
    chunks = [body] if isinstance(body, bytes) else body
    if sum(len(chunk) for chunk in chunks) <= INLINE_BYTES:
        quick = _decode_quick(b"".join(chunks), shape)
        if quick is not None:
            return quick
    from runtime.decodepool import POOL

    loop = asyncio.get_running_loop()
    gate = _decoding.get(loop)
    if gate is None:
        gate = _decoding[loop] = asyncio.Semaphore(DECODE_THREADS)
    async with gate:
        return await anyio.to_thread.run_sync(POOL.decode, chunks, shape)
