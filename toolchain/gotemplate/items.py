"""The vocabulary of the lexer: item types (keywords among them), `Item`, the delimiters
and the character classes.

The numbering follows Go's `itemType`; every type above `KEYWORD` is a keyword, which is
how the parser and `Item.describe` tell them apart.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass

from toolchain.gotemplate.gofmt import quote


class T(enum.IntEnum):
    """Item types; everything above KEYWORD is a keyword."""

    ERROR = 0
    BOOL = 1
    CHAR = 2
    CHAR_CONSTANT = 3
    COMMENT = 4
    COMPLEX = 5
    ASSIGN = 6
    DECLARE = 7
    EOF = 8
    FIELD = 9
    IDENTIFIER = 10
    LEFT_DELIM = 11
    LEFT_PAREN = 12
    NUMBER = 13
    PIPE = 14
    RAW_STRING = 15
    RIGHT_DELIM = 16
    RIGHT_PAREN = 17
    SPACE = 18
    STRING = 19
    TEXT = 20
    VARIABLE = 21
    KEYWORD = 22
    BLOCK = 23
    BREAK = 24
    CONTINUE = 25
    DOT = 26
    DEFINE = 27
    ELSE = 28
    END = 29
    IF = 30
    NIL = 31
    RANGE = 32
    TEMPLATE = 33
    WITH = 34


KEYWORDS: dict[str, T] = {
    ".": T.DOT,
    "block": T.BLOCK,
    "break": T.BREAK,
    "continue": T.CONTINUE,
    "define": T.DEFINE,
    "else": T.ELSE,
    "end": T.END,
    "if": T.IF,
    "range": T.RANGE,
    "nil": T.NIL,
    "template": T.TEMPLATE,
    "with": T.WITH,
}


SPACE_CHARS = " \t\r\n"
LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
TERMINATORS = frozenset(" \t\r\n.,|:)(")
EOF = ""


def is_alnum(ch: str) -> bool:
    """A letter, a decimal digit or `_`: what identifiers, fields and variables are made of."""
    return ch == "_" or ch.isalpha() or unicodedata.category(ch) == "Nd" if ch else False


@dataclass(frozen=True, slots=True)
class Item:
    typ: T
    pos: int  # byte offset of the item's start
    val: str
    line: int

    def describe(self) -> str:
        """The item as Go's parser quotes it in `unexpected ...` errors."""
        if self.typ == T.EOF:
            return "EOF"
        if self.typ == T.ERROR:
            return self.val
        if self.typ > T.KEYWORD:
            return f"<{self.val}>"
        return quote(self.val[:10]) + "..." if len(self.val) > 10 else quote(self.val)
