"""Decode request bodies the way the reference's Go server does, errors included.

The reference binds every body with Go's `encoding/json` Decoder, so clients see Go's
messages: `invalid character 'x' looking for beginning of value`, `unexpected EOF`,
`json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string`.
Request shapes are declared as data (`Struct`, `Slice`, `Map`, scalars); `decode` checks a
body against one, first with a byte scanner that mirrors Go's state machine (syntax errors),
then with a walk that mirrors Go's type rules (keys match fields case-insensitively, `null`
leaves a field unset, the first type error wins unless a custom field decoder fails).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import MISSING_BODY, ApiError
from toolchain.gojson import loads

_SPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"


class _SyntaxError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _quote_char(c: int) -> str:
    """Go's quoteChar: the byte as a Go rune literal."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    escapes = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 92: "\\\\"}
    if c in escapes:
        return f"'{escapes[c]}'"
    ch = chr(c)
    if ch.isprintable():
        return f"'{ch}'"
    return f"'\\x{c:02x}'" if c < 0x80 else f"'\\u{c:04x}'"


def _invalid(c: int, context: str) -> _SyntaxError:
    return _SyntaxError(f"invalid character {_quote_char(c)} {context}")


class _Scanner:
    """Go's encoding/json scanner, reduced to finding the first syntax error of one value."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0

    def peek(self) -> int:
        if self.i >= len(self.data):
            raise _SyntaxError("unexpected EOF")
        return self.data[self.i]

    def skip_space(self) -> int:
        while True:
            c = self.peek()
            if c not in _SPACE:
                return c
            self.i += 1

    def value(self) -> None:
        c = self.skip_space()
        self.i += 1
        if c == 0x7B:  # {
            self.object()
        elif c == 0x5B:  # [
            self.array()
        elif c == 0x22:
            self.string()
        elif c == 0x2D or c in _DIGITS:
            self.number(c)
        elif c in b"tfn":
            word = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[c]
            for expect in word[1:]:
                got = self.peek()
                if got != expect:
                    name = word.decode()
                    raise _invalid(got, f"in literal {name} (expecting '{chr(expect)}')")
                self.i += 1
        else:
            raise _invalid(c, "looking for beginning of value")

    def object(self) -> None:
        c = self.skip_space()
        if c == 0x7D:
            self.i += 1
            return
        while True:
            c = self.skip_space()
            if c != 0x22:
                raise _invalid(c, "looking for beginning of object key string")
            self.i += 1
            self.string()
            c = self.skip_space()
            if c != 0x3A:
                raise _invalid(c, "after object key")
            self.i += 1
            self.value()
            c = self.skip_space()
            self.i += 1
            if c == 0x7D:
                return
            if c != 0x2C:
                raise _invalid(c, "after object key:value pair")

    def array(self) -> None:
        c = self.skip_space()
        if c == 0x5D:
            self.i += 1
            return
        while True:
            self.value()
            c = self.skip_space()
            self.i += 1
            if c == 0x5D:
                return
            if c != 0x2C:
                raise _invalid(c, "after array element")

    def string(self) -> None:
        while True:
            c = self.peek()
            self.i += 1
            if c == 0x22:
                return
            if c < 0x20:
                raise _invalid(c, "in string literal")
            if c == 0x5C:
                e = self.peek()
                self.i += 1
                if e == 0x75:
                    for _ in range(4):
                        h = self.peek()
                        if h not in _HEX:
                            raise _invalid(h, "in \\u hexadecimal character escape")
                        self.i += 1
                elif e not in b'bfnrt\\/"':
                    raise _invalid(e, "in string escape code")

    def digits(self) -> int:
        n = 0
        while self.i < len(self.data) and self.data[self.i] in _DIGITS:
            self.i += 1
            n += 1
        return n

    def number(self, first: int) -> None:
        if first == 0x2D:
            c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "in numeric literal")
            self.i += 1
            first = c
        if first != 0x30:
            self.digits()
        if self.i < len(self.data) and self.data[self.i] == 0x2E:
            self.i += 1
            c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "after decimal point in numeric literal")
            self.digits()
        if self.i < len(self.data) and self.data[self.i] in b"eE":
            self.i += 1
            c = self.peek()
            if c in b"+-":
                self.i += 1
                c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "in exponent of numeric literal")
            self.digits()


class Number(float):
    """A JSON number that remembers its literal (Go reports `number 1.5` for int fields)."""

    literal: str

    def __new__(cls, literal: str) -> Number:
        obj = super().__new__(cls, float(literal))
        obj.literal = literal
        return obj


def parse_json(body: bytes) -> Any:
    """The first JSON value of `body`, or ApiError(400) with Go's Decoder message."""
    scanner = _Scanner(body)
    try:
        start = scanner.skip_space()
    except _SyntaxError:
        raise ApiError(400, MISSING_BODY) from None
    del start
    begin = scanner.i
    try:
        scanner.value()
    except _SyntaxError as exc:
        raise ApiError(400, exc.message) from None
    # invalid UTF-8 and lone surrogate escapes become U+FFFD, as in Go's decoder
    text = body[begin : scanner.i].decode("utf-8", errors="replace")
    return loads(text, parse_float=Number, parse_int=int)


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
        return t.custom(value)
    if kind == "any":
        return value
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, Number):
            errs.add(f"number {value.literal}", path, t)
            return None
    elif kind == "float":
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
    value = parse_json(body)
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
