"""Go's `encoding/json` output, byte for byte: the one encoder every JSON writer uses.

The store's blob digests only equal the reference's if the bytes do, and a template's
`json` function must print what Go prints, so this reproduces `json.Marshal` and
`json.NewEncoder(w).Encode` exactly (store_api.md §1.7, modelfile_template.md §3): compact,
map keys sorted byte-wise, struct fields in declaration order, `<>&` and U+2028/9 escaped,
`\\b`/`\\f` short escapes (Go >= 1.22), non-ASCII raw, floats in Go's shortest form.

How Python values stand for Go values:

    None -> null              bool -> true/false        int -> an integer
    float -> a float64        str -> a string           bytes -> []byte (base64)
    dict -> a map (keys sorted)                         list, tuple -> a slice
    GoStruct -> a struct: keys in the order given (callers drop empty omitempty fields)
    RawJSON -> text this module already encoded, written as is (json.RawMessage)

Any other value encodes as what its type's `go_json()` method returns: that is how the
template engine's Go types (nil slices, typed structs with JSON tags, Marshalers) map onto
the above without this module knowing them. Strings are Go strings: a code point U+DC80..
U+DCFF is an invalid UTF-8 byte (Python's surrogateescape) and encodes as `\\ufffd`, as Go
writes invalid UTF-8; another lone surrogate, which Go's decoder would have turned into
U+FFFD, is written as that character. Numbers that came through a Go `map[string]any` are
float64 in the reference, so callers pass `float` for them (`decode_any` does).

On the way in, `loads` is `json.loads` with Go's decoder's one difference for strings: an
escaped lone surrogate (`"\\ud800"`) becomes U+FFFD (Python keeps the surrogate, which no
UTF-8 encoder accepts later). Every place JSON from outside enters (request bodies, `mfc
template` data, tool-call arguments) decodes through it.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "GoStruct",
    "JSONError",
    "RawJSON",
    "UnsupportedTypeError",
    "decode_any",
    "encode",
    "format_float",
    "loads",
    "marshal",
    "replace_lone_surrogates",
]


class GoStruct(dict[str, Any]):
    """A Go struct: keys keep the order they were inserted in (Go's field order)."""


class RawJSON(str):
    """JSON text already encoded by this module, written verbatim (Go's json.RawMessage)."""

    __slots__ = ()


class JSONError(ValueError):
    """A value Go's encoding/json refuses (NaN, ±Inf)."""


class UnsupportedTypeError(JSONError, TypeError):
    """A type Go's encoding/json cannot encode (complex numbers, functions, ...)."""


def _escape(code: int) -> str:
    ch = chr(code)
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
             "\f": "\\f", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}  # fmt: skip
    if ch in named:
        return named[ch]
    if code < 0x20 or code in (0x2028, 0x2029):
        return f"\\u{code:04x}"
    if 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
        return "\\ufffd"
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate: U+FFFD once Go has decoded it
        return "\ufffd"
    return ch


_STRING_TABLE = {
    code: _escape(code)
    for code in (*range(0x80), 0x2028, 0x2029, *range(0xD800, 0xE000))
    if _escape(code) != chr(code)
}


def _string(s: str) -> str:
    return '"' + s.translate(_STRING_TABLE) + '"'


def format_float(x: float) -> str:
    """Go's `strconv.AppendFloat(x, fmt, -1, 64)` as encoding/json picks `fmt`.

    Shortest round-trip digits; plain notation unless |x| < 1e-6 or |x| >= 1e21, where
    the exponent form is used with Go's `e-07` -> `e-7` clean-up.
    """
    if math.isnan(x) or math.isinf(x):
        raise JSONError(f"json: unsupported value: {x!r}")
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


def _map_key(key: object) -> bytes:
    """The bytes Go sorts a map key by (its UTF-8, invalid bytes as themselves)."""
    if not isinstance(key, str):
        raise UnsupportedTypeError(f"json: map keys must be strings, not {type(key).__name__}")
    try:
        return key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates: U+FFFD to Go
        fixed = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF and not 0xDC80 <= ord(c) <= 0xDCFF
                        else c for c in key)  # fmt: skip
        return fixed.encode("utf-8", "surrogateescape")


def _object(items: Any, out: list[str]) -> None:
    out.append("{")
    first = True
    for k, v in items:
        if not first:
            out.append(",")
        first = False
        out.append(_string(k))
        out.append(":")
        _encode(v, out)
    out.append("}")


def _encode(value: Any, out: list[str]) -> None:
    t = type(value)
    if t is str:
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif t is bool:
        out.append("true" if value else "false")
    elif t is int:
        out.append(str(value))
    elif t is float:
        out.append(format_float(value))
    elif t is dict:
        _object(sorted(value.items(), key=lambda kv: _map_key(kv[0])), out)
    elif t is GoStruct:
        _object(value.items(), out)
    elif t is list or t is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif t is RawJSON:
        out.append(value)
    elif (go_json := getattr(t, "go_json", None)) is not None:
        _encode(go_json(value), out)
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_float(float(value)))
    elif isinstance(value, str):
        out.append(_string(str(value)))
    elif isinstance(value, (bytes, bytearray)):
        out.append('"' + base64.b64encode(value).decode("ascii") + '"')
    elif isinstance(value, GoStruct):
        _object(value.items(), out)
    elif isinstance(value, Mapping):
        _object(sorted(value.items(), key=lambda kv: _map_key(kv[0])), out)
    elif isinstance(value, Sequence):
        _encode(list(value), out)
    else:
        raise UnsupportedTypeError(f"json: unsupported type: {t.__name__}")


def marshal(value: Any) -> str:
    """`json.Marshal(value)` as text; raises JSONError where Go returns an error."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def encode(value: Any, *, newline: bool = True) -> bytes:
    """The bytes `json.NewEncoder(w).Encode(value)` writes (`newline=False`: `json.Marshal`)."""
    text = marshal(value)
    return (text + "\n" if newline else text).encode("utf-8")


#: how a surrogate gets into decoded JSON: a `\\uD800`-`\\uDFFF` escape or, in bytes, a
#: surrogate's UTF-8 form (`json.loads` decodes bytes with surrogatepass)
_SURROGATE_IN_TEXT = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE_IN_BYTES = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_lone_surrogates(value: Any) -> Any:
    """`value` (decoded JSON) with every lone surrogate in its strings and keys replaced by
    U+FFFD, as Go's decoder does it. A valid pair was already joined by `json.loads`."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_lone_surrogates(v) for v in value]
    return value


def loads(data: bytes | str, **options: Any) -> Any:
    """`json.loads(data, **options)`, with strings as Go's decoder gives them (no lone
    surrogates: see `replace_lone_surrogates`). Raises `json.JSONDecodeError`."""
    value = json.loads(data, **options)
    if isinstance(data, bytes):
        maybe = _SURROGATE_IN_BYTES.search(data) is not None
    else:
        maybe = _SURROGATE_IN_TEXT.search(data) is not None
    return replace_lone_surrogates(value) if maybe else value


def decode_any(data: bytes | str) -> Any:
    """Decode JSON the way Go decodes into `any`: every number becomes a float64, every
    string valid UTF-8.

    Re-encoding the result with `encode` then gives the reference's bytes (a big integer
    loses precision exactly as it does in Go).
    """
    return loads(data, parse_int=float)
