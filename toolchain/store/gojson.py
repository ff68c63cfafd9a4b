"""Go `encoding/json` output, byte for byte: the one encoder every JSON blob goes through.

Digests of params, messages, config and manifest blobs are only equal to the reference's
if the bytes are, so this reproduces `json.NewEncoder(w).Encode(v)` exactly (store_api.md
§1.7): compact, map keys sorted, struct fields in declaration order, `<>&` and U+2028/9
escaped, non-ASCII raw, floats in Go's shortest form, and a trailing newline.

A Python `dict` is a Go map (keys sorted); a `GoStruct` is a Go struct (fields in the
order given; the caller leaves out empty `omitempty` fields). Numbers that came through a
Go `map[string]any` are float64 in the reference, so callers pass `float` for them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["GoStruct", "decode_any", "encode", "format_float"]


class GoStruct(dict[str, Any]):
    """A Go struct: keys keep the order they were inserted in (Go's field order)."""


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",  # Go >= 1.22 (the reference builds with 1.26)
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _escape_char(ch: str) -> str:
    esc = _ESCAPES.get(ch)
    if esc is not None:
        return esc
    code = ord(ch)
    if code < 0x20:
        return f"\\u{code:04x}"
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate is invalid UTF-8 to Go
        return "\\ufffd"
    return ch


_TABLE = {i: _escape_char(chr(i)) for i in range(0x80)}
_TABLE.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def _string(s: str) -> str:
    out = s.translate(_TABLE)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in out):
        out = "".join("\\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in out)
    return '"' + out + '"'


def format_float(x: float) -> str:
    """Go's `strconv.AppendFloat(x, fmt, -1, 64)` as encoding/json picks `fmt`.

    Shortest round-trip digits; plain notation unless |x| < 1e-6 or |x| >= 1e21, where
    the exponent form is used with Go's `e-07` -> `e-7` clean-up.
    """
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"json: unsupported value: {x!r}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    r = repr(x)  # shortest round-trip digits, like Go's -1 precision
    a = abs(x)
    if a < 1e-6 or a >= 1e21:
        mant, _, exp = r.partition("e")
        if not exp:  # repr chose plain notation; force the exponent form
            mant, _, exp = f"{Decimal(r):e}".partition("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mant}e{sign}{digits}"
    s = format(Decimal(r), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, GoStruct):
        _object(list(value.items()), out)
    elif isinstance(value, Mapping):
        _object(sorted(value.items(), key=lambda kv: _map_key(kv[0])), out)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _map_key(key: object) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"json: map keys must be strings, not {type(key).__name__}")
    return key.encode("utf-8", "surrogatepass")  # Go sorts map keys byte-wise


def _object(items: list[tuple[Any, Any]], out: list[str]) -> None:
    out.append("{")
    for i, (k, v) in enumerate(items):
        if i:
            out.append(",")
        out.append(_string(k))
        out.append(":")
        _encode(v, out)
    out.append("}")


def encode(value: Any, *, newline: bool = True) -> bytes:
    """The bytes `json.NewEncoder(w).Encode(value)` writes (`newline=False`: `json.Marshal`)."""
    out: list[str] = []
    _encode(value, out)
    if newline:
        out.append("\n")
    return "".join(out).encode("utf-8")


def decode_any(data: bytes | str) -> Any:
    """Decode JSON the way Go decodes into `any`: every number becomes a float64.

    Re-encoding the result with `encode` then gives the reference's bytes (a big integer
    loses precision exactly as it does in Go).
    """
    return json.loads(data, parse_int=float)
