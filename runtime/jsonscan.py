"""Go's encoding/json scanner (syntax errors, nesting limit) and a builder for deep documents.

`runtime.jsonbody` decodes with Python's C `json` module first; this module is the slow,
exact path it falls back to. `Scanner.value` walks one JSON value the way Go's scanner
does and raises `JsonSyntaxError` with Go's message at the first byte Go would reject, or
`TooManyValuesError` past a value count. It is iterative (Go nests up to 10000 levels; Python's
recursion would not) and skips runs of plain string bytes, whitespace and digits with
regular expressions, so its cost is per token, not per byte. `build` turns a document the
scanner accepted but that is too deep for the C decoder into Python values, iteratively.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

#: Go's maxNestingDepth: arrays and objects may nest this deep, no deeper.
MAX_DEPTH = 10_000

_SPACE = b" \t\r\n"
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = b"0123456789"
_SPACES = re.compile(rb"[ \t\r\n]*")
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_DIGIT_RUN = re.compile(rb"[0-9]*")


class JsonSyntaxError(Exception):
    """The first syntax error of a body, with Go's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TooManyValuesError(Exception):
    """The body holds more JSON values than the scanner was allowed to count."""


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


def _invalid(c: int, context: str) -> JsonSyntaxError:
    return JsonSyntaxError(f"invalid character {_quote_char(c)} {context}")


_OBJECT, _ARRAY = 0x7B, 0x5B


class Scanner:
    """Go's encoding/json scanner, reduced to finding the first syntax error of one value."""

    def __init__(self, data: bytes, max_values: int | None = None) -> None:
        self.data = data
        self.i = 0
        self.values = 0
        self.max_values = max_values

    def peek(self) -> int:
        if self.i >= len(self.data):
            raise JsonSyntaxError("unexpected EOF")
        return self.data[self.i]

    def skip_space(self) -> int:
        m = _SPACES.match(self.data, self.i)
        assert m is not None
        self.i = m.end()
        return self.peek()

    def value(self) -> None:
        """Scan one value from `i` (leading space allowed); `i` ends just past it."""
        stack: list[int] = []
        while True:
            c = self.skip_space()
            self.i += 1
            self.values += 1
            if self.max_values is not None and self.values > self.max_values:
                raise TooManyValuesError
            if c in (_OBJECT, _ARRAY):
                if len(stack) >= MAX_DEPTH:
                    raise _invalid(c, "exceeded max depth")
                stack.append(c)
                close = 0x7D if c == _OBJECT else 0x5D
                if self.skip_space() == close:
                    self.i += 1
                    stack.pop()
                elif c == _OBJECT:
                    self.key()
                    continue
                else:
                    continue
            elif c == 0x22:
                self.string()
            elif c == 0x2D or c in _DIGITS:
                self.number(c)
            elif c in b"tfn":
                self.literal(c)
            else:
                raise _invalid(c, "looking for beginning of value")
            # a value ended: close every container it completes
            while stack:
                c = self.skip_space()
                self.i += 1
                if stack[-1] == _OBJECT:
                    if c == 0x7D:
                        stack.pop()
                        continue
                    if c != 0x2C:
                        raise _invalid(c, "after object key:value pair")
                    self.skip_space()
                    self.key()
                    break
                if c == 0x5D:
                    stack.pop()
                    continue
                if c != 0x2C:
                    raise _invalid(c, "after array element")
                break
            else:
                return

    def key(self) -> None:
        """An object key and its colon (at a non-space byte)."""
        c = self.peek()
        if c != 0x22:
            raise _invalid(c, "looking for beginning of object key string")
        self.i += 1
        self.string()
        c = self.skip_space()
        if c != 0x3A:
            raise _invalid(c, "after object key")
        self.i += 1

    def literal(self, first: int) -> None:
        word = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[first]
        for expect in word[1:]:
            got = self.peek()
            if got != expect:
                raise _invalid(got, f"in literal {word.decode()} (expecting '{chr(expect)}')")
            self.i += 1

    def string(self) -> None:
        data = self.data
        while True:
            m = _PLAIN.match(data, self.i)
            assert m is not None
            self.i = m.end()
            c = self.peek()
            self.i += 1
            if c == 0x22:
                return
            if c < 0x20:
                raise _invalid(c, "in string literal")
            e = self.peek()  # c is a backslash
            self.i += 1
            if e == 0x75:
                for _ in range(4):
                    h = self.peek()
                    if h not in _HEX:
                        raise _invalid(h, "in \\u hexadecimal character escape")
                    self.i += 1
            elif e not in b'bfnrt\\/"':
                raise _invalid(e, "in string escape code")

    def digits(self) -> None:
        m = _DIGIT_RUN.match(self.data, self.i)
        assert m is not None
        self.i = m.end()

    def number(self, first: int) -> None:
        if first == 0x2D:
            c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "in numeric literal")
            self.i += 1
            first = c
        if first != 0x30:
            self.digits()
        data = self.data
        if self.i < len(data) and data[self.i] == 0x2E:
            self.i += 1
            c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "after decimal point in numeric literal")
            self.digits()
        if self.i < len(data) and data[self.i] in b"eE":
            self.i += 1
            c = self.peek()
            if c in b"+-":
                self.i += 1
                c = self.peek()
            if c not in _DIGITS:
                raise _invalid(c, "in exponent of numeric literal")
            self.digits()


_TOKEN = re.compile(
    r'[ \t\r\n]*(?:([{}\[\],:"])|(-?(?:0|[1-9][0-9]*)(?:(\.[0-9]+)?([eE][-+]?[0-9]+)?))'
    r"|(true|false|null))"
)
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}


def build(
    text: str,
    parse_int: Callable[[str], Any],
    parse_float: Callable[[str], Any],
    clean: Callable[[str], str],
) -> Any:
    """The value of one JSON document `text` that `Scanner` accepted, built without recursion.

    Numbers go through `parse_int`/`parse_float` as with `json.loads`; every string and key
    through `clean` (Go's lone-surrogate rule).
    """
    scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
    open_: list[Any] = []
    key: str | None = None
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        assert m is not None, "build() takes documents the scanner accepted"
        pos = m.end()
        punct, number, literal = m.group(1), m.group(2), m.group(5)
        value: Any
        if punct is None:
            if number is not None:
                value = parse_float(number) if m.group(3) or m.group(4) else parse_int(number)
            else:
                value = _LITERALS[literal]
        elif punct == '"':
            s, pos = scanstring(text, pos, True)
            value = clean(s)
            if open_ and key is None and isinstance(open_[-1], dict):
                key = value
                continue
        elif punct in "{[":
            value = {} if punct == "{" else []
        elif punct in "}]":
            done = open_.pop()
            if not open_:
                return done
            continue
        else:  # , and :
            continue
        if not open_:
            if not isinstance(value, dict | list):
                return value
        elif isinstance(open_[-1], list):
            open_[-1].append(value)
        else:
            assert key is not None
            open_[-1][key] = value
            key = None
        if isinstance(value, dict | list):
            open_.append(value)
