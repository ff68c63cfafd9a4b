"""The parts of Go's `strconv` the reference applies to Modelfile values, exactly.

`parse_int64` is `ParseInt(s, 10, 64)`, `parse_float32` is `ParseFloat(s, 32)` (Go float
literal syntax, underscores between digits, hex mantissas with a `p` exponent, inf/nan;
the result correctly rounded to float32), `parse_bool` is `ParseBool`. `format_float_v`
is how `fmt`'s `%v` prints a float64 (`4096`, `0.7`, `1e+06`). Each parser raises
`ValueError` where Go returns an error (syntax or range).
"""

from __future__ import annotations

import math
from fractions import Fraction

_DIGITS = "0123456789"
_HEX_LETTERS = "abcdefABCDEF"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# float32: 24-bit significand, smallest subnormal 2**-149, overflow from 2**128 up
_F32_SIGNIFICAND, _F32_MIN_QUANTUM, _F32_LIMIT = 24, -149, 1 << 128


def parse_int64(s: str) -> int:
    """`strconv.ParseInt(s, 10, 64)`: optional sign, ASCII digits only, int64 range."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or any(ch not in _DIGITS for ch in body):
        raise ValueError(f"invalid syntax: {s!r}")
    value = int(s)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"value out of range: {s!r}")
    return value


def parse_bool(s: str) -> bool:
    """`strconv.ParseBool`."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"invalid syntax: {s!r}")


def parse_float32(s: str) -> float:
    """`strconv.ParseFloat(s, 32)`, returned as the float32 value (held in a Python float)."""
    special = _special(s)
    if special is not None:
        return special
    exact, consumed = _read_float(s)
    if exact is None or consumed != len(s):
        raise ValueError(f"invalid syntax: {s!r}")
    return _round_float32(exact, negative=s.startswith("-"), text=s)


def _special(s: str) -> float | None:
    """inf, infinity (optionally signed) and nan (unsigned), any case; whole string only."""
    sign, body = 1.0, s
    if s[:1] in ("+", "-"):
        sign, body = (-1.0 if s[0] == "-" else 1.0), s[1:]
        if body.lower() in ("inf", "infinity"):
            return sign * math.inf
        return None
    if body.lower() in ("inf", "infinity"):
        return math.inf
    if body.lower() == "nan":
        return math.nan
    return None


def _read_float(s: str) -> tuple[Fraction | None, int]:
    """Go's `readFloat`: the exact value of the longest float prefix, and its length."""
    n, i = len(s), 0
    if i < n and s[i] in "+-":
        i += 1
    base, exp_chars, hexa = 10, "eE", False
    if i + 2 < n and s[i] == "0" and s[i + 1] in "xX":
        base, exp_chars, hexa = 16, "pP", True
        i += 2
    underscores = sawdot = sawdigits = False
    mantissa = nd = dp = 0
    while i < n:
        c = s[i]
        if c == "_":
            underscores = True
        elif c == ".":
            if sawdot:
                break
            sawdot, dp = True, nd
        elif c in _DIGITS or (hexa and c in _HEX_LETTERS):
            sawdigits = True
            if c == "0" and nd == 0:
                dp -= 1  # leading zeros
            else:
                nd += 1
                mantissa = mantissa * base + int(c, 16)
        else:
            break
        i += 1
    if not sawdigits:
        return None, i
    if not sawdot:
        dp = nd
    exponent = 0
    if i < n and s[i] in exp_chars:
        i += 1
        if i >= n:
            return None, i
        esign = 1
        if s[i] in "+-":
            esign = -1 if s[i] == "-" else 1
            i += 1
        if i >= n or s[i] not in _DIGITS:
            return None, i
        e = 0
        while i < n and (s[i] in _DIGITS or s[i] == "_"):
            if s[i] == "_":
                underscores = True
            elif e < 10000:  # Go stops growing the exponent here; so do we
                e = e * 10 + int(s[i])
            i += 1
        exponent = esign * e
    elif hexa:
        return None, i  # a hex mantissa needs its p exponent
    if underscores and not _underscore_ok(s[:i]):
        return None, i
    if mantissa == 0:
        return Fraction(0), i
    if hexa:
        return Fraction(mantissa) * Fraction(2) ** (4 * (dp - nd) + exponent), i
    scale = dp - nd + exponent
    # beyond these the float32 result is 0 or overflow whatever the digits
    if dp + exponent > 40:
        return Fraction(10) ** 40, i
    if dp + exponent < -50:
        return Fraction(1, 10**60), i
    return Fraction(mantissa) * Fraction(10) ** scale, i


def _underscore_ok(s: str) -> bool:
    """Go's `underscoreOK`: `_` only between digits (or after a base prefix)."""
    saw, i = "^", 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1] in "bBoOxX":
        i, saw, hexa = 2, "0", s[1] in "xX"
    for c in s[i:]:
        if c in _DIGITS or (hexa and c in _HEX_LETTERS):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _round_float32(x: Fraction, negative: bool, text: str) -> float:
    """Round an exact non-negative value to the nearest float32, ties to even."""
    sign = -1.0 if negative else 1.0
    if x == 0:
        return sign * 0.0
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** e > x:
        e -= 1
    quantum = max(e - (_F32_SIGNIFICAND - 1), _F32_MIN_QUANTUM)
    steps = round(x / Fraction(2) ** quantum)  # Fraction rounds half to even
    value = Fraction(steps) * Fraction(2) ** quantum
    if value >= _F32_LIMIT:
        raise ValueError(f"value out of range: {text!r}")
    return sign * math.ldexp(steps, quantum)


def format_float_v(x: float) -> str:
    """Go's `fmt.Sprintf("%v", x)` for a float64: the shortest round-tripping digits, in
    `%e` form (`1e+06`) when the decimal exponent is < -4 or >= 6, else plain (`0.7`)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    mantissa, _, exp_text = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + (int(exp_text) if exp_text else 0)  # decimal point position
    if not digits:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    lead_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    point -= lead_zeros
    digits = digits.rstrip("0") or "0"
    sign = "-" if x < 0 else ""
    exp = point - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"
