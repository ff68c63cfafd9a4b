"""`keep_alive` values: Go's time.ParseDuration, and the reference's number/string rules."""

from __future__ import annotations

import math
from typing import Any

from runtime.errors import ApiError
from runtime.jsonbody import go_type_name

FOREVER = math.inf

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = (1 << 63) - 1
#: The longest keep_alive: Go's time.Duration ends at 2^63-1 ns (~292 years). Anything
#: longer is forever, and forever expires that far ahead in /api/ps, as in the reference.
MAX_SECONDS = _MAX_NS / 1e9


def capped(seconds: float) -> float:
    """`seconds` of keep_alive, FOREVER from MAX_SECONDS up (so it never becomes a date past
    the calendar's end)."""
    return FOREVER if seconds >= MAX_SECONDS else seconds


def expiry(now: float, seconds: float) -> float:
    """When a keep_alive of `seconds` started at `now` ends (FOREVER: MAX_SECONDS ahead)."""
    return now + min(max(seconds, 0.0), MAX_SECONDS)


class DurationError(ValueError):
    """A string Go's time.ParseDuration rejects; the message is Go's."""


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_go_duration(text: str) -> int:
    """Go's `time.ParseDuration`: nanoseconds, or DurationError with Go's message."""
    orig, s = text, text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    invalid = DurationError(f"time: invalid duration {_quote(orig)}")
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or (s[0].isascii() and s[0].isdigit())):
            raise invalid
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        int_part, s = s[:i], s[i:]
        frac_part = ""
        if s.startswith("."):
            j = 1
            while j < len(s) and "0" <= s[j] <= "9":
                j += 1
            frac_part, s = s[1:j], s[j:]
        if not int_part and not frac_part:
            raise invalid
        k = 0
        while k < len(s) and s[k] != "." and not ("0" <= s[k] <= "9"):
            k += 1
        if k == 0:
            raise DurationError(f"time: missing unit in duration {_quote(orig)}")
        unit, s = s[:k], s[k:]
        scale = _UNITS_NS.get(unit)
        if scale is None:
            raise DurationError(f"time: unknown unit {_quote(unit)} in duration {_quote(orig)}")
        value = int(int_part or "0")
        if value > _MAX_NS // scale:
            raise invalid
        ns = value * scale
        if frac_part:
            ns += int(int(frac_part) * scale / 10 ** len(frac_part))
        total += ns
        if total > _MAX_NS:
            raise invalid
    return -total if neg else total


def keep_alive_seconds(value: Any) -> float:
    """A request's `keep_alive` in seconds (FOREVER when negative); ApiError(400) if invalid.

    Numbers are seconds; strings are Go durations (`"5m"`, `"1h30m"`, `"-1s"`); anything
    else is rejected with the reference's message.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"Unsupported type: '{go_type_name(value)}'")
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except DurationError as exc:
            raise ApiError(400, str(exc)) from None
        return FOREVER if ns < 0 else capped(ns / 1e9)
    return FOREVER if value < 0 else capped(float(value))


def keep_alive_from_env(raw: str | None, default: float = 300.0) -> float:
    """`OLLAMA_KEEP_ALIVE`: a Go duration or integer seconds; negative means forever."""
    if raw is None or not raw.strip():
        return default
    raw = raw.strip()
    try:
        ns = parse_go_duration(raw)
        return FOREVER if ns < 0 else capped(ns / 1e9)
    except DurationError:
        pass
    try:
        secs = int(raw)
    except ValueError:
        return default
    return FOREVER if secs < 0 else capped(float(secs))
