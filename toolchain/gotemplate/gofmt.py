"""Go's fmt and strconv output for template values: %v printing, Sprint, Sprintln, quoting.

Printf's verbs live in `printf.py`; this module holds what every printed value needs.
"""

from __future__ import annotations

import math
import unicodedata
from contextvars import ContextVar
from typing import Any

from toolchain.gotemplate.values import (
    NO_VALUE,
    GoBytes,
    GoMap,
    GoSlice,
    GoStruct,
    to_bytes,
)

#: while a capped function (printf, print, ...) runs: the render's `Limits.max_output`
STRING_CAP: ContextVar[int | None] = ContextVar("STRING_CAP", default=None)


class StringCapError(Exception):
    """A function's result would exceed STRING_CAP: refused before it is built."""


def joined(pieces: list[str]) -> str:
    """`"".join(pieces)`, unless that exceeds STRING_CAP: a 32 MB join is ~20 ms of one
    C call holding the GIL (and the memory), for a result the caller would refuse anyway."""
    cap = STRING_CAP.get()
    if cap is not None and sum(len(piece) for piece in pieces) > cap:
        raise StringCapError
    return "".join(pieces)


_QUOTE_ESC = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def is_print(ch: str) -> bool:
    """strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space."""
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def quote(s: str, ascii_only: bool = False, q: str = '"') -> str:
    """strconv.Quote (or QuoteToASCII / QuoteRune with `q="'"`)."""
    out = [q]
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a raw byte that is not valid UTF-8
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == q or ch == "\\":  # noqa: PLR1714
            out.append("\\" + ch)
        elif (o < 0x80 and is_print(ch)) or (not ascii_only and o >= 0x80 and is_print(ch)):
            out.append(ch)
        elif o in _QUOTE_ESC:
            out.append(_QUOTE_ESC[o])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xD800 <= o < 0xE000 or o > 0x10FFFF:
            out.append("\\ufffd")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append(q)
    return "".join(out)


def format_unicode(ch: str) -> str:
    """%#U: `U+0041 'A'` (just `U+0007` when not printable)."""
    o = ord(ch)
    head = f"U+{o:04X}"
    return f"{head} '{ch}'" if is_print(ch) else head


def shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of |x| and the exponent e with x = 0.DIGITS * 10**e."""
    mant, _, exp = repr(abs(x)).partition("e")
    intpart, _, frac = mant.partition(".")
    digits = intpart + frac
    dp = len(intpart) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    dp -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, dp) if digits else ("0", 1)


def _exp_suffix(e: int, letter: str = "e") -> str:
    return f"{letter}{'-' if e < 0 else '+'}{abs(e):02d}"


def format_float_g_shortest(x: float, letter: str = "e") -> str:
    """strconv.FormatFloat(x, 'g', -1, 64): what %v prints for a float64."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0"
    digits, dp = shortest_digits(x)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return sign + m + _exp_suffix(exp, letter)
    if dp <= 0:
        return sign + "0." + "0" * -dp + digits
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return sign + digits[:dp] + "." + digits[dp:]


def format_complex_v(c: complex) -> str:
    im = format_float_g_shortest(c.imag)
    if not im.startswith(("-", "+")):
        im = "+" + im
    return "(" + format_float_g_shortest(c.real) + im + "i)"


def value_string(v: Any, depth: int = 0) -> str:
    """fmt's %v of one operand (Stringers honoured, nested pointers as addresses)."""
    t = type(v)
    if t is str:
        return str(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is float:
        return format_float_g_shortest(v)
    if v is None or v is NO_VALUE:
        return "<nil>"
    if t is complex:
        return format_complex_v(v)
    if isinstance(v, GoStruct):
        if v.go_is_nil():
            return "<nil>"
        s = v.go_string()
        if s is not None:
            return s
        if v.go_pointer and depth > 0:
            return f"0xc{id(v) & 0xFFFFFFFFF:09x}"
        body = "{" + " ".join(value_string(getattr(v, f), depth + 1) for f in v.go_fields) + "}"
        return ("&" if v.go_pointer else "") + body
    if isinstance(v, (GoSlice, GoMap)):
        s = v.go_string()
        if s is not None:
            return s
    if isinstance(v, GoBytes):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, list):
        return "[" + " ".join(value_string(e, depth + 1) for e in v) + "]"
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda kv: to_bytes(kv[0]))
        return "map[" + " ".join(f"{k}:{value_string(x, depth + 1)}" for k, x in items) + "]"
    if isinstance(v, int):  # GoUint8 and other int subclasses
        return str(int(v))
    return f"0x{id(v) & 0xFFFFFF:x}"


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: a space between operands when neither side is a string."""
    out: list[str] = []
    prev_string = True
    for i, a in enumerate(args):
        is_string = type(a) is str
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(value_string(a))
        prev_string = is_string
    return joined(out)


def sprintln(args: list[Any]) -> str:
    out: list[str] = []
    for i, a in enumerate(args):
        if i > 0:
            out.append(" ")
        out.append(value_string(a))
    out.append("\n")
    return joined(out)
