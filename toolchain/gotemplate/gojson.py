"""Go's encoding/json.Marshal for template values (the `json` function and JSON Stringers).

Compact output, map keys sorted byte-wise, struct fields in declaration order under their
tags, HTML-safe escapes (`\\u003c`), `\\b`/`\\f` (Go >= 1.22), floats as Go writes them.
"""

from __future__ import annotations

import base64
import codecs
import math
from typing import Any

from toolchain.gotemplate.values import NO_VALUE, GoBytes, GoMap, GoSlice, GoStruct, GoUint8


class JSONError(ValueError):
    """A value encoding/json refuses (NaN, Inf, complex, functions)."""


def _per_byte_replace(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("go_runes", _per_byte_replace)


def go_runes(s: str) -> str:
    """The string as Go's range-over-string sees it: each invalid byte becomes U+FFFD."""
    if s.isascii() or not any(0xDC80 <= ord(c) <= 0xDCFF for c in s):
        return s
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "go_runes")


_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
        "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}  # fmt: skip  # noqa: E501
_TABLE = {i: f"\\u{i:04x}" for i in range(0x20)}
_TABLE.update({ord(k): v for k, v in _ESC.items()})


def encode_string(s: str) -> str:
    return '"' + go_runes(s).translate(_TABLE) + '"'


def _shortest(x: float, fmt: str) -> str:
    """strconv.FormatFloat(x, fmt, -1, 64) for fmt in 'e', 'f'."""
    from toolchain.gotemplate.gofmt import shortest_digits

    digits, dp = shortest_digits(x)
    sign = "-" if x < 0 else ""
    if fmt == "e":
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = dp - 1
        return f"{sign}{m}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if dp <= 0:
        return sign + "0." + "0" * -dp + digits
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return sign + digits[:dp] + "." + digits[dp:]


def encode_float(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        raise JSONError(f"json: unsupported value: {x}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    a = abs(x)
    if a < 1e-6 or a >= 1e21:
        s = _shortest(x, "e")
        if len(s) >= 4 and s[-4] == "e" and s[-3] == "-" and s[-2] == "0":
            s = s[:-2] + s[-1]
        return s
    return _shortest(x, "f")


def _is_empty(v: Any) -> bool:
    if v is None or v is NO_VALUE:
        return True
    if isinstance(v, (GoSlice, GoMap)) and v.is_nil:
        return True
    if isinstance(v, GoStruct):
        return False
    if isinstance(v, (str, list, dict, bytes)):
        return len(v) == 0
    if isinstance(v, (bool, int, float)):
        return v == 0
    return False


def marshal(v: Any) -> str:
    """json.Marshal(v) as text; raises JSONError where Go returns an error."""
    out: list[str] = []
    _encode(v, out)
    return "".join(out)


def _encode(v: Any, out: list[str]) -> None:
    t = type(v)
    if t is str:
        out.append(encode_string(v))
    elif v is None or v is NO_VALUE:
        out.append("null")
    elif t is bool:
        out.append("true" if v else "false")
    elif t is int or t is GoUint8:
        out.append(str(int(v)))
    elif t is float:
        out.append(encode_float(v))
    elif isinstance(v, GoBytes):
        out.append('"' + base64.b64encode(v).decode() + '"')
    elif isinstance(v, list):
        if isinstance(v, GoSlice):
            if v.is_nil:
                out.append("null")
                return
            alt = v.go_json_value()
            if alt is not NotImplemented:
                _encode(alt, out)
                return
        out.append("[")
        for i, e in enumerate(v):
            if i:
                out.append(",")
            _encode(e, out)
        out.append("]")
    elif isinstance(v, dict):
        if isinstance(v, GoMap) and v.is_nil:
            out.append("null")
            return
        out.append("{")
        for i, k in enumerate(sorted(v, key=lambda k: k.encode("utf-8", "surrogateescape"))):
            if i:
                out.append(",")
            out.append(encode_string(k))
            out.append(":")
            _encode(v[k], out)
        out.append("}")
    elif isinstance(v, GoStruct):
        cached = getattr(v, "go_json_text", None)
        if cached is not None:
            out.append(cached())
            return
        alt = v.go_json_value()
        if alt is not NotImplemented:
            _encode(alt, out)
            return
        _encode_fields(v, out)
    elif isinstance(v, OrderedJSON):
        out.append("{")
        for i, (k, x) in enumerate(v.items):
            if i:
                out.append(",")
            out.append(encode_string(k))
            out.append(":")
            _encode(x, out)
        out.append("}")
    else:
        raise JSONError(f"json: unsupported type: {type(v).__name__}")


def marshal_struct(v: GoStruct) -> str:
    """A struct's own field encoding (bypassing any cached text)."""
    out: list[str] = []
    _encode_fields(v, out)
    return "".join(out)


def _encode_fields(v: GoStruct, out: list[str]) -> None:
    spec = v.go_json or tuple((f, f, False) for f in v.go_fields)
    out.append("{")
    first = True
    for field, name, omitempty in spec:
        value = getattr(v, field)
        if omitempty and _is_empty(value):
            continue
        if not first:
            out.append(",")
        first = False
        out.append(encode_string(name))
        out.append(":")
        _encode(value, out)
    out.append("}")


class OrderedJSON:
    """An object whose keys encode in insertion order (Ollama's ordered maps)."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items
