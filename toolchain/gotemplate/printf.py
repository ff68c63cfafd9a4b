"""fmt.Sprintf for template values: flags `#0+- `, width, precision (also `*`), Go's verbs,
and Go's error notations (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA ...)`, `%!(NOVERB)`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from toolchain.gotemplate.gofmt import (
    format_float_g_shortest,
    format_unicode,
    is_print,
    joined,
    quote,
    value_string,
)
from toolchain.gotemplate.values import (
    NO_VALUE,
    GoBytes,
    GoMap,
    GoSlice,
    GoStruct,
    GoUint8,
    to_bytes,
    type_name,
)


@dataclass(slots=True)
class Flags:
    sharp: bool = False
    zero: bool = False
    plus: bool = False
    minus: bool = False
    space: bool = False
    wid: int | None = None
    prec: int | None = None


def _pad(s: str, f: Flags) -> str:
    if not f.wid:
        return s
    n = f.wid - len(s)
    if n <= 0:
        return s
    if f.minus:
        return s + " " * n
    return ("0" if f.zero else " ") * n + s


def _fmt_integer(u: int, base: int, verb: str, f: Flags, upper: bool = False) -> str:
    negative = u < 0
    u = abs(u)
    prec = 0
    if f.prec is not None:
        prec = f.prec
        if prec == 0 and u == 0:
            return " " * (f.wid or 0)
    elif f.zero and not f.minus and f.wid is not None:
        prec = f.wid
        if negative or f.plus or f.space:
            prec -= 1
    if base == 10:
        digits = str(u)
    else:
        digits = {2: "{:b}", 8: "{:o}", 16: "{:X}" if upper else "{:x}"}[base].format(u)
    digits = digits.rjust(prec, "0")
    if f.sharp:
        if base == 2:
            digits = "0b" + digits
        elif base == 8 and digits[0] != "0":
            digits = "0" + digits
        elif base == 16:
            digits = ("0X" if upper else "0x") + digits
    if verb == "O":
        digits = "0o" + digits
    sign = "-" if negative else "+" if f.plus else " " if f.space else ""
    return _pad(sign + digits, Flags(minus=f.minus, wid=f.wid))


def _strconv_float(v: float, verb: str, prec: int) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if prec < 0:
        return format_float_g_shortest(v, "E" if verb == "G" else "e")
    if verb in "gG":  # noqa: SIM108
        s = format(v, f".{max(prec, 1)}{verb}")
    else:
        s = format(v, f".{prec}{verb}")
    return s


def _fmt_float(v: float, verb: str, prec: int, f: Flags) -> str:
    if f.prec is not None:
        prec = f.prec
    num = _strconv_float(v, verb, prec)
    if num[0] not in "+-":
        num = "+" + num
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if num[1] in "IN":
        if num[1] == "N" and not f.space and not f.plus:
            num = num[1:]
        return _pad(num, Flags(minus=f.minus, wid=f.wid))
    if f.plus or num[0] != "+":
        if f.zero and not f.minus and f.wid is not None and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f)


def _truncate(s: str, f: Flags) -> str:
    return s[: f.prec] if f.prec is not None else s


def _fmt_sx(b: bytes, f: Flags, upper: bool) -> str:
    if f.prec is not None:
        b = b[: f.prec]
    hexd = b.hex().upper() if upper else b.hex()
    pairs = [hexd[i : i + 2] for i in range(0, len(hexd), 2)]
    prefix = "0X" if upper else "0x"
    if not pairs:
        return _pad("", f)
    if f.space:
        out = " ".join((prefix + p) if f.sharp else p for p in pairs)
    else:
        out = (prefix if f.sharp else "") + "".join(pairs)
    return _pad(out, f)


def _fmt_string(s: str, verb: str, f: Flags) -> str | None:
    if verb in "vs":
        return _pad(_truncate(s, f), f)
    if verb == "q":
        s = _truncate(s, f)
        if f.sharp and "`" not in s and all(c == "\t" or is_print(c) for c in s):
            return _pad("`" + s + "`", f)
        return _pad(quote(s, ascii_only=f.plus), f)
    if verb in "xX":
        return _fmt_sx(to_bytes(s), f, verb == "X")
    return None


def _fmt_int(v: int, verb: str, f: Flags, signed: bool) -> str | None:
    if verb in "vd":
        return _fmt_integer(v, 10, verb, f)
    if verb == "b":
        return _fmt_integer(v, 2, verb, f)
    if verb in "oO":
        return _fmt_integer(v, 8, verb, f)
    if verb in "xX":
        return _fmt_integer(v, 16, verb, f, upper=verb == "X")
    if verb in "cqU":
        r = v if 0 <= v <= 0x10FFFF and not 0xD800 <= v < 0xE000 else 0xFFFD
        ch = chr(r)
        if verb == "c":
            return _pad(ch, f)
        if verb == "q":
            return _pad(quote(ch, ascii_only=f.plus, q="'"), f)
        out = f"U+{v:04X}" if v >= 0 else f"U+{v & 0xFFFFFFFFFFFFFFFF:04X}"
        if f.sharp and is_print(ch) and v == r:
            out = format_unicode(ch)
        return _pad(out, f)
    return None


def format_arg(v: Any, verb: str, f: Flags, depth: int = 0) -> str:
    """One operand under one verb (Go's printArg / printValue)."""
    if v is None or v is NO_VALUE:
        if verb in "Tv" or depth > 0:  # a nil inside a slice or map prints as <nil>
            return _pad("<nil>", f)
        return _bad_verb(v, verb, f)
    if verb == "T":
        return _pad(type_name(v), f)
    t = type(v)
    out: str | None = None
    if t is bool:
        out = _pad("true" if v else "false", f) if verb in "tv" else None
    elif t is float:
        if verb == "v":
            out = _fmt_float(v, "g", -1, f)
        elif verb in "gGeEfF":
            out = _fmt_float(v, verb, -1 if verb in "gG" else 6, f)
    elif t is int or isinstance(v, GoUint8):
        out = _fmt_int(int(v), verb, f, signed=t is int)
    elif t is str:
        out = _fmt_string(v, verb, f)
    elif t is complex:
        if verb in "vgGeEfF":
            fv = "g" if verb == "v" else verb
            prec = -1 if fv in "gG" else 6
            re = _fmt_float(
                v.real, fv, prec, Flags(f.sharp, False, f.plus, False, f.space, None, f.prec)
            )
            im = _fmt_float(
                v.imag, fv, prec, Flags(f.sharp, False, True, False, False, None, f.prec)
            )
            out = _pad("(" + re + im + "i)", Flags(minus=f.minus, wid=f.wid))
    else:
        s = v.go_string() if isinstance(v, (GoStruct, GoSlice, GoMap)) else None
        if s is not None and verb in "vsxXq":
            out = _fmt_string(s, verb, f)
        elif isinstance(v, GoBytes):
            out = _fmt_bytes(v, verb, f, depth)
        elif isinstance(v, list):
            out = "[" + " ".join(format_arg(e, verb, f, depth + 1) for e in v) + "]"
        elif isinstance(v, dict):
            keys = sorted(v, key=to_bytes)
            inner = (
                f"{format_arg(k, verb, f, depth + 1)}:{format_arg(v[k], verb, f, depth + 1)}"
                for k in keys
            )
            out = "map[" + " ".join(inner) + "]"
        elif isinstance(v, GoStruct):
            if v.go_is_nil():  # fmt prints a nil pointer's %v as <nil>; other verbs are bad
                out = "<nil>" if verb == "v" else None
            elif v.go_pointer and depth > 0:
                out = value_string(v, depth) if verb in "vp" else None
            else:
                body = " ".join(format_arg(getattr(v, n), verb, f, depth + 1) for n in v.go_fields)
                out = ("&" if v.go_pointer else "") + "{" + body + "}"
    return out if out is not None else _bad_verb(v, verb, f)


def _fmt_bytes(v: bytes, verb: str, f: Flags, depth: int) -> str | None:
    if verb in "sq":
        return _fmt_string(v.decode("utf-8", "surrogateescape"), verb, f)
    if verb in "xX":
        return _fmt_sx(v, f, verb == "X")
    parts = [_fmt_int(b, verb, f, signed=False) for b in v]
    if any(p is None for p in parts):
        return None
    return "[" + " ".join(p for p in parts if p is not None) + "]"


def _bad_verb(v: Any, verb: str, f: Flags) -> str:
    if v is None or v is NO_VALUE:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(v)}={format_arg(v, 'v', f)})"


def _parse_num(s: str, i: int) -> tuple[int | None, int]:
    """Go's parsenum: digits at `i`; a number grown past a million before its next digit
    is absent and ends the format (Go then prints %!(NOVERB))."""
    j, num = i, 0
    while j < len(s) and "0" <= s[j] <= "9":
        if num > _TOO_LARGE:
            return None, len(s)
        num = num * 10 + ord(s[j]) - 48
        j += 1
    return (num, j) if j > i else (None, i)


def sprintf(fmt: str, args: list[Any]) -> str:
    """fmt.Sprintf with Go's verbs and error notations."""
    out: list[str] = []
    argn, i, end = 0, 0, len(fmt)
    while i < end:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        f = Flags()
        while i < end and fmt[i] in "#0+- ":
            c = fmt[i]
            if c == "#":
                f.sharp = True
            elif c == "0":
                f.zero = not f.minus
            elif c == "+":
                f.plus = True
            elif c == "-":
                f.minus, f.zero = True, False
            else:
                f.space = True
            i += 1
        if i < end and fmt[i] == "*":
            i += 1
            f.wid, argn, bad = _star(args, argn)
            if bad:
                out.append("%!(BADWIDTH)")
            elif f.wid is not None and f.wid < 0:
                f.wid, f.minus, f.zero = -f.wid, True, False
        else:
            f.wid, i = _parse_num(fmt, i)
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if i < end and fmt[i] == "*":
                i += 1
                f.prec, argn, bad = _star(args, argn)
                if f.prec is not None and f.prec < 0:
                    f.prec, bad = None, True
                if bad:
                    out.append("%!(BADPREC)")
            else:
                f.prec, i = _parse_num(fmt, i)
                if f.prec is None:
                    f.prec = 0
        if i >= end:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
        elif argn >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                f.sharp = False  # %#v (Go syntax) is not supported; print as %v
                f.plus = False
            out.append(format_arg(args[argn], verb, f))
            argn += 1
    if argn < len(args):
        extra = []
        for a in args[argn:]:
            extra.append(
                "<nil>"
                if a is None or a is NO_VALUE
                else f"{type_name(a)}={format_arg(a, 'v', Flags())}"
            )
        out.append("%!(EXTRA " + ", ".join(extra) + ")")
    return joined(out)


def _star(args: list[Any], argn: int) -> tuple[int | None, int, bool]:
    if argn >= len(args):
        return None, argn, True
    a = args[argn]
    if type(a) is int or isinstance(a, GoUint8):
        n = int(a)
        if -_TOO_LARGE <= n <= _TOO_LARGE:
            return n, argn + 1, False
    return None, argn + 1, True


#: Go's fmt tooLarge: a `*` width or precision past a million is BADWIDTH/BADPREC.
_TOO_LARGE = 1_000_000
