"""Go literal syntax: strconv.Unquote / UnquoteChar and the number rules of parse.newNumber.

Strings are Python `str`; bytes that are not valid UTF-8 (from `\\xff` or octal escapes) are
carried as surrogate escapes (U+DC80..U+DCFF) and written back as the raw byte.
"""

from __future__ import annotations

import math

from toolchain.gotemplate.nodes import NumberNode

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX = "0123456789abcdefABCDEF"


class SyntaxErr(ValueError):  # noqa: N818
    """strconv.ErrSyntax: Go prints it as `invalid syntax`."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


def _byte_char(b: int) -> str:
    return chr(b) if b < 0x80 else chr(0xDC00 + b)


def unquote_char(s: str, i: int, quote: str) -> tuple[str, int]:
    """Decode one (possibly escaped) character of `s` at index `i`; returns (text, next index)."""
    c = s[i]
    if c == quote and quote in "'\"":
        raise SyntaxErr
    if c != "\\":
        return c, i + 1
    if i + 1 >= len(s):
        raise SyntaxErr
    c = s[i + 1]
    i += 2
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i
    if c in "xuU":
        n = {"x": 2, "u": 4, "U": 8}[c]
        digits = s[i : i + n]
        if len(digits) < n or any(d not in _HEX for d in digits):
            raise SyntaxErr
        v = int(digits, 16)
        if c == "x":
            return (chr(v) if quote == "'" else _byte_char(v)), i + n
        if v > 0x10FFFF or 0xD800 <= v < 0xE000:
            raise SyntaxErr
        return chr(v), i + n
    if c in "01234567":
        digits = s[i - 1 : i + 2]
        if len(digits) < 3 or any(d not in "01234567" for d in digits):
            raise SyntaxErr
        v = int(digits, 8)
        if v > 255:
            raise SyntaxErr
        return (chr(v) if quote == "'" else _byte_char(v)), i + 2
    if c == "\\":
        return "\\", i
    if c in "'\"":
        if c != quote:
            raise SyntaxErr
        return c, i
    raise SyntaxErr


def unquote(s: str) -> str:
    """strconv.Unquote for "..." and `...` literals (the lexer never hands us anything else)."""
    if len(s) < 2 or s[0] != s[-1]:
        raise SyntaxErr
    quote, body = s[0], s[1:-1]
    if quote == "`":
        if "`" in body:
            raise SyntaxErr
        return body.replace("\r", "")
    if quote != '"' or "\n" in body:
        raise SyntaxErr
    if "\\" not in body and '"' not in body:
        return body
    out, i = [], 0
    while i < len(body):
        ch, i = unquote_char(body, i, quote)
        out.append(ch)
    return "".join(out)


def _underscore_ok(s: str) -> bool:
    saw, i = "^", 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if (c.isdigit() and c.isascii()) or (hexa and c.lower() in "abcdef"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def _parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64)."""
    if not s or ("_" in s and not _underscore_ok(s)):
        return None
    base, body = 10, s
    low = s[:2].lower()
    if low in ("0x", "0o", "0b"):
        base, body = {"0x": 16, "0o": 8, "0b": 2}[low], s[2:]
    elif len(s) > 1 and s[0] == "0":
        base, body = 8, s[1:]
    body = body.replace("_", "")
    if not body:
        return None
    try:
        v = int(body, base)
    except ValueError:
        return None
    return v if v < 1 << 64 and body[0] not in "+-" else None


def _parse_int(s: str) -> int | None:
    neg = s[:1] == "-"
    body = s[1:] if s[:1] in "+-" else s
    if not body or body[0] in "+-":
        return None
    u = _parse_uint(body)
    if u is None:
        return None
    v = -u if neg else u
    return v if -(1 << 63) <= v < 1 << 63 else None


def parse_float(s: str) -> float | None:
    """strconv.ParseFloat(s, 64) for the characters the lexer lets through (None on error)."""
    if "_" in s and not _underscore_ok(s):
        return None
    t = s.replace("_", "")
    body = t.lstrip("+-")
    if len(t) - len(body) > 1:
        return None
    try:
        if body[:2].lower() == "0x":
            if "p" not in body.lower():
                return None
            v = float.fromhex(t)
        else:
            if not body or body[0] not in "0123456789." or body.lower().startswith(("0b", "0o")):
                return None
            v = float(t)
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(v) or math.isnan(v) else v


def _simplify_complex(n: NumberNode) -> None:
    n.is_float = n.complex128.imag == 0
    if n.is_float:
        f = n.complex128.real
        n.float64 = f
        n.is_int = math.isfinite(f) and -(2.0**63) <= f < 2.0**63 and float(int(f)) == f
        if n.is_int:
            n.int64 = int(f)
        n.is_uint = math.isfinite(f) and 0 <= f < 2.0**64 and float(int(f)) == f
        if n.is_uint:
            n.uint64 = int(f)


def _parse_complex(text: str) -> complex:
    # "re+imi" or "re-imi": split at the last sign that is not an exponent sign
    for i in range(len(text) - 1, 0, -1):
        if text[i] in "+-" and text[i - 1] not in "eEpP":
            re, im = parse_float(text[:i]), parse_float(text[i:-1])
            if re is None or im is None:
                break
            return complex(re, im)
    raise ValueError(f"bad complex literal {text}")


def number_node(pos: int, text: str, kind: str) -> NumberNode:
    """parse.newNumber: `kind` is "char", "complex" or "number". Raises ValueError(message)."""
    n = NumberNode(pos, None, text)
    if kind == "char":
        ch, i = unquote_char(text, 1, "'")
        if text[i:] != "'":
            raise ValueError(f"malformed character constant: {text}")
        r = ord(ch)
        n.int64 = n.uint64 = r
        n.float64 = float(r)
        n.is_int = n.is_uint = n.is_float = True
        return n
    if kind == "complex":
        n.complex128 = _parse_complex(text)
        n.is_complex = True
        _simplify_complex(n)
        return n
    if text.endswith("i"):
        f = parse_float(text[:-1])
        if f is not None:
            n.is_complex = True
            n.complex128 = complex(0, f)
            _simplify_complex(n)
            return n
    u = _parse_uint(text)
    if u is not None:
        n.is_uint, n.uint64 = True, u
    signed = _parse_int(text)
    if signed is not None:
        n.is_int, n.int64 = True, signed
        if signed == 0:
            n.is_uint, n.uint64 = True, u or 0
    if n.is_int:
        n.is_float, n.float64 = True, float(n.int64)
    elif n.is_uint:
        n.is_float, n.float64 = True, float(n.uint64)
    else:
        f = parse_float(text)
        if f is not None:
            if not any(c in text for c in ".eEpP"):
                from toolchain.gotemplate.gofmt import quote

                raise ValueError(f"integer overflow: {quote(text)}")
            n.is_float, n.float64 = True, f
            if -(2.0**63) <= f < 2.0**63 and float(int(f)) == f:
                n.is_int, n.int64 = True, int(f)
            if 0 <= f < 2.0**64 and float(int(f)) == f:
                n.is_uint, n.uint64 = True, int(f)
    if not (n.is_int or n.is_uint or n.is_float):
        from toolchain.gotemplate.gofmt import quote

        raise ValueError(f"illegal number syntax: {quote(text)}")
    return n
