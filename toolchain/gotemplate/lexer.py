"""Lexer for Go's text/template language: a state machine over the source text.

Each state is a method that scans some input and either emits one item (and returns None,
handing control back to the parser) or returns the next state. Positions are *byte*
offsets into the UTF-8 encoding, as Go's are, because error messages report them. The
item types, delimiters and character classes it scans for are in `items.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from toolchain.gotemplate.gofmt import format_unicode, quote
from toolchain.gotemplate.items import (
    EOF,
    KEYWORDS,
    LEFT_COMMENT,
    LEFT_DELIM,
    RIGHT_COMMENT,
    RIGHT_DELIM,
    SPACE_CHARS,
    TERMINATORS,
    Item,
    T,
    is_alnum,
)


def _has_left_trim(s: str, i: int) -> bool:
    return len(s) >= i + 2 and s[i] == "-" and s[i + 1] in SPACE_CHARS


def _has_right_trim(s: str, i: int) -> bool:
    return len(s) >= i + 2 and s[i] in SPACE_CHARS and s[i + 1] == "-"


State = Callable[[], "State | None"]


class Lexer:
    """Scans `text` one item at a time (`next_item`); works on characters, reports bytes."""

    def __init__(self, text: str, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.at_eof = False
        self.paren_depth = 0
        self.line = 1
        self.start_line = 1
        self.inside_action = False
        self.break_ok = break_ok
        self.continue_ok = continue_ok
        self.item = Item(T.EOF, 0, "EOF", 1)
        # character index -> byte offset, built lazily only for non-ASCII input
        self._ascii = text.isascii()
        self._byte_at: list[int] | None = None

    # -- positions -------------------------------------------------------------
    def byte_pos(self, i: int) -> int:
        if self._ascii:
            return i
        if self._byte_at is None:
            acc, table = 0, []
            for ch in self.input:
                table.append(acc)
                acc += len(ch.encode("utf-8", "surrogatepass"))
            table.append(acc)
            self._byte_at = table
        return self._byte_at[i]

    # -- primitives ------------------------------------------------------------
    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return EOF
        ch = self.input[self.pos]
        self.pos += 1
        if ch == "\n":
            self.line += 1
        return ch

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else EOF

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1
            if self.input[self.pos] == "\n":
                self.line -= 1

    def this_item(self, typ: T) -> Item:
        item = Item(
            typ, self.byte_pos(self.start), self.input[self.start : self.pos], self.start_line
        )
        self.start = self.pos
        self.start_line = self.line
        return item

    def emit(self, typ: T) -> None:
        self.item = self.this_item(typ)

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        ch = self.next()
        if ch and ch in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            ch = self.next()
            if not ch or ch not in valid:
                break
        self.backup()

    def errorf(self, msg: str) -> None:
        self.item = Item(T.ERROR, self.byte_pos(self.start), msg, self.start_line)
        self.start = 0
        self.pos = 0
        self.input = ""
        self._ascii = True

    def next_item(self) -> Item:
        self.item = Item(T.EOF, self.byte_pos(self.pos), "EOF", self.start_line)
        state: State | None = self.lex_inside_action if self.inside_action else self.lex_text
        while state is not None:
            state = state()
        return self.item

    # -- states ----------------------------------------------------------------
    def lex_text(self) -> State | None:
        x = self.input.find(LEFT_DELIM, self.pos)
        if x >= 0:
            if x > self.pos:
                self.pos = x
                trim = 0
                if _has_left_trim(self.input, x + len(LEFT_DELIM)):
                    chunk = self.input[self.start : self.pos]
                    trim = len(chunk) - len(chunk.rstrip(SPACE_CHARS))
                self.pos -= trim
                self.line += self.input.count("\n", self.start, self.pos)
                item = self.this_item(T.TEXT)
                self.pos += trim
                self.ignore()
                if item.val:
                    self.item = item
                    return None
            return self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.line += self.input.count("\n", self.start, self.pos)
            self.emit(T.TEXT)
            return None
        self.emit(T.EOF)
        return None

    def at_right_delim(self) -> tuple[bool, bool]:
        s, p = self.input, self.pos
        if _has_right_trim(s, p) and s.startswith(RIGHT_DELIM, p + 2):
            return True, True
        if s.startswith(RIGHT_DELIM, p):
            return True, False
        return False, False

    def lex_left_delim(self) -> State | None:
        self.pos += len(LEFT_DELIM)
        trim = _has_left_trim(self.input, self.pos)
        after = 2 if trim else 0
        if self.input.startswith(LEFT_COMMENT, self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        item = self.this_item(T.LEFT_DELIM)
        self.inside_action = True
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        self.item = item
        return None

    def lex_comment(self) -> State | None:
        self.pos += len(LEFT_COMMENT)
        x = self.input.find(RIGHT_COMMENT, self.pos)
        if x < 0:
            self.errorf("unclosed comment")
            return None
        self.pos = x + len(RIGHT_COMMENT)
        delim, trim = self.at_right_delim()
        if not delim:
            self.errorf("comment ends before closing delimiter")
            return None
        self.this_item(T.COMMENT)
        if trim:
            self.pos += 2
        self.pos += len(RIGHT_DELIM)
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
        self.ignore()
        return self.lex_text

    def lex_right_delim(self) -> State | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += len(RIGHT_DELIM)
        item = self.this_item(T.RIGHT_DELIM)
        if trim:
            rest = self.input[self.pos :]
            self.pos += len(rest) - len(rest.lstrip(SPACE_CHARS))
            self.ignore()
        self.inside_action = False
        self.item = item
        return None

    def lex_inside_action(self) -> State | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            self.errorf("unclosed left paren")
            return None
        ch = self.next()
        if ch == EOF:
            self.errorf("unclosed action")
        elif ch in SPACE_CHARS:
            self.backup()
            return self.lex_space
        elif ch == "=":
            self.emit(T.ASSIGN)
        elif ch == ":":
            if self.next() != "=":
                self.errorf("expected :=")
            else:
                self.emit(T.DECLARE)
        elif ch == "|":
            self.emit(T.PIPE)
        elif ch == '"':
            return self.lex_quote
        elif ch == "`":
            return self.lex_raw_quote
        elif ch == "$":
            return self.lex_variable
        elif ch == "'":
            return self.lex_char
        elif ch == "." and self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
            return self.lex_field
        elif ch in "+-." or "0" <= ch <= "9":
            self.backup()
            return self.lex_number
        elif is_alnum(ch):
            self.backup()
            return self.lex_identifier
        elif ch == "(":
            self.paren_depth += 1
            self.emit(T.LEFT_PAREN)
        elif ch == ")":
            self.paren_depth -= 1
            if self.paren_depth < 0:
                self.errorf("unexpected right paren")
            else:
                self.emit(T.RIGHT_PAREN)
        elif ord(ch) < 0x80 and ch.isprintable():
            self.emit(T.CHAR)
        else:
            self.errorf(f"unrecognized character in action: {format_unicode(ch)}")
        return None

    def lex_space(self) -> State | None:
        n = 0
        while self.peek() and self.peek() in SPACE_CHARS:
            self.next()
            n += 1
        if _has_right_trim(self.input, self.pos - 1) and self.input.startswith(
            RIGHT_DELIM, self.pos + 1
        ):
            self.backup()
            if n == 1:
                return self.lex_right_delim
        self.emit(T.SPACE)
        return None

    def lex_identifier(self) -> State | None:
        while True:
            ch = self.next()
            if is_alnum(ch):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self._bad_char(ch)
            kw = KEYWORDS.get(word)
            if kw is not None and kw > T.KEYWORD:
                if (kw == T.BREAK and not self.break_ok) or (
                    kw == T.CONTINUE and not self.continue_ok
                ):
                    self.emit(T.IDENTIFIER)
                else:
                    self.emit(kw)
            elif word[0] == ".":
                self.emit(T.FIELD)
            elif word in ("true", "false"):
                self.emit(T.BOOL)
            else:
                self.emit(T.IDENTIFIER)
            return None

    def _bad_char(self, ch: str) -> State | None:
        self.errorf(f"bad character {format_unicode(ch)}")
        return None

    def lex_field(self) -> State | None:
        return self.lex_field_or_variable(T.FIELD)

    def lex_variable(self) -> State | None:
        if self.at_terminator():
            self.emit(T.VARIABLE)
            return None
        return self.lex_field_or_variable(T.VARIABLE)

    def lex_field_or_variable(self, typ: T) -> State | None:
        if self.at_terminator():
            self.emit(T.VARIABLE if typ == T.VARIABLE else T.DOT)
            return None
        while True:
            ch = self.next()
            if not is_alnum(ch):
                self.backup()
                break
        if not self.at_terminator():
            return self._bad_char(ch)
        self.emit(typ)
        return None

    def at_terminator(self) -> bool:
        ch = self.peek()
        if ch == EOF or ch in TERMINATORS:
            return True
        return self.input.startswith(RIGHT_DELIM, self.pos)

    def lex_char(self) -> State | None:
        return self._lex_quoted("'", T.CHAR_CONSTANT, "unterminated character constant")

    def lex_number(self) -> State | None:
        if not self.scan_number():
            return self._bad_number()
        if self.peek() in ("+", "-") and self.peek():
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self._bad_number()
            self.emit(T.COMPLEX)
            return None
        self.emit(T.NUMBER)
        return None

    def _bad_number(self) -> State | None:
        self.errorf(f"bad number syntax: {quote(self.input[self.start : self.pos])}")
        return None

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if is_alnum(self.peek()):
            self.next()
            return False
        return True

    def lex_quote(self) -> State | None:
        return self._lex_quoted('"', T.STRING, "unterminated quoted string")

    def _lex_quoted(self, close: str, typ: T, unterminated: str) -> State | None:
        """Scan to the closing quote; a backslash escapes anything but a newline."""
        while True:
            ch = self.next()
            if ch == "\\":
                ch = self.next()
                if ch not in (EOF, "\n"):
                    continue
            if ch in (EOF, "\n"):
                self.errorf(unterminated)
                return None
            if ch == close:
                break
        self.emit(typ)
        return None

    def lex_raw_quote(self) -> State | None:
        while True:
            ch = self.next()
            if ch == EOF:
                self.errorf("unterminated raw quoted string")
                return None
            if ch == "`":
                break
        self.emit(T.RAW_STRING)
        return None
