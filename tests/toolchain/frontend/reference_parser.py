"""An independent oracle: the reference's rune-level state machine, transcribed from
spec §1.4 (parser/parser.go) statement by statement. Tests only; the product parser is
the Lark grammar. Errors are returned as (kind, text) with kind "parser", "eof", "from".
"""

from __future__ import annotations

from dataclasses import dataclass

NIL, NAME, VALUE, PARAMETER, MESSAGE, COMMENT = range(6)
VALID = (
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
)
INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'


@dataclass
class RejectedError(Exception):
    kind: str
    text: str


def _alpha(r: str) -> bool:
    return ("a" <= r <= "z") or ("A" <= r <= "Z")


def _number(r: str) -> bool:
    return "0" <= r <= "9"


def _space(r: str) -> bool:
    return r in " \t"


def _newline(r: str) -> bool:
    return r in "\r\n"


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
    if s.startswith('"'):
        return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
    return s, True


def _step(r: str, cs: int) -> tuple[int, str, str | None]:
    if cs == NIL:
        if r == "#":
            return COMMENT, "", None
        if _space(r) or _newline(r):
            return NIL, "", None
        return NAME, r, None
    if cs == NAME:
        if _alpha(r):
            return NAME, r, None
        if _space(r):
            return VALUE, "", None
        return NIL, "", "invalid"
    if cs == VALUE:
        if _newline(r) or _space(r):
            return NIL, r, None
        return VALUE, r, None
    if cs == PARAMETER:
        if _alpha(r) or _number(r) or r == "_":
            return PARAMETER, r, None
        if _space(r):
            return VALUE, "", None
        return NIL, "", "eof"
    if cs == MESSAGE:
        if _alpha(r):
            return MESSAGE, r, None
        if _space(r):
            return VALUE, "", None
        return NIL, "", "eof"
    if _newline(r):
        return NIL, "", None
    return COMMENT, "", None


def reference_parse(text: str) -> list[tuple[str, str]]:
    """Commands of `text` (already decoded), or raise RejectedError."""
    curr, line, b, role = NIL, 1, "", ""
    name, commands = "", []
    for r in text:
        if _newline(r):
            line += 1
        nxt, out, err = _step(r, curr)
        if err == "eof":
            raise RejectedError("eof", "unexpected EOF: " + b)
        if err == "invalid":
            raise RejectedError("parser", f"(line {line}): {INVALID_COMMAND}")
        if nxt != curr:
            if curr == NAME:
                s = b.lower()
                if s not in VALID:
                    raise RejectedError("parser", f"(line {line}): {INVALID_COMMAND}")
                if s == "from":
                    name = "model"
                elif s == "parameter":
                    nxt = PARAMETER
                elif s == "message":
                    nxt = MESSAGE
                    name = "message"
                else:
                    name = s
            elif curr == PARAMETER:
                name = b
            elif curr == MESSAGE:
                if b not in ("system", "user", "assistant"):
                    raise RejectedError("parser", f"(line {line}): {INVALID_ROLE}")
                role = b
            elif curr == VALUE:
                s, ok = _unquote(b.strip(" \t\r\n"))
                if not ok or _space(out):
                    b += out
                    continue
                if role:
                    s = role + ": " + s
                    role = ""
                commands.append((name, s))
            b = ""
            curr = nxt
        if out and out.isprintable():
            b += out
    if curr == VALUE:
        s, ok = _unquote(b.strip(" \t\r\n"))
        if not ok:
            raise RejectedError("eof", "unexpected EOF")
        if role:
            s = role + ": " + s
        commands.append((name, s))
    elif curr not in (NIL, COMMENT):
        raise RejectedError("eof", "unexpected EOF")
    if not any(n == "model" for n, _ in commands):
        raise RejectedError("from", "no FROM line")
    return commands
