"""The reference's words for a rejected Modelfile (spec §1.7), from where Lark stopped.

The grammar accepts exactly the reference's language, so the first place Lark fails is
the first place the reference fails, and the parser state there tells which of the
reference's states it was in:

  expecting a keyword (NIL)      the reference reads a NAME: one rune, then ASCII letters;
                                 EOF -> `unexpected EOF`; anything but space/tab ->
                                 ParserError(invalid command); a space after a word that
                                 is no keyword -> the same ParserError
  expecting PARAM_NAME           name runes [A-Za-z0-9_]*, then EOF -> `unexpected EOF`,
                                 anything but space/tab -> `unexpected EOF: <name>`
  expecting ROLE                 letters, then EOF -> `unexpected EOF`, space/tab ->
                                 ParserError(invalid role), else `unexpected EOF: <role>`
  expecting VALUE                a quote that never balances -> `unexpected EOF`

A ParserError's line is the reference's: 1 + the CR and LF runes read so far, the
offending rune included.
"""

from __future__ import annotations

import difflib

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from toolchain.frontend.decode import DROPPED
from toolchain.frontend.errors import (
    COMMANDS,
    ERR_INVALID_COMMAND,
    ERR_INVALID_MESSAGE_ROLE,
    ERR_UNEXPECTED_EOF,
    MESSAGE_ROLES,
    ModelfileSyntaxError,
    ParserError,
    UnexpectedEOFError,
)
from toolchain.frontend.positions import LineIndex

_SEPARATORS = " \t"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _is_alpha(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _expected(failure: UnexpectedInput) -> set[str]:
    if isinstance(failure, UnexpectedCharacters):
        return set(failure.allowed or ())
    if isinstance(failure, UnexpectedToken):
        return set(failure.expected)
    return set(getattr(failure, "expected", ()) or ())


def _reference_line(text: str, i: int) -> int:
    return 1 + text.count("\r", 0, i + 1) + text.count("\n", 0, i + 1)


def _next_line(text: str, i: int) -> int | None:
    """Where recovery resumes: after the first line break at or after `i`."""
    ends = [k for k in (text.find("\r", i), text.find("\n", i)) if k >= 0]
    return min(ends) + 1 if ends else None


def describe_failure(
    text: str, original: str, base: int, failure: UnexpectedInput, index: LineIndex
) -> tuple[ModelfileSyntaxError, int | None]:
    """The reference's error for a parse of `text[base:]` that failed with `failure`, and
    the offset where recovery can resume (None: nothing follows that can be parsed)."""
    n = len(text)
    at = failure.pos_in_stream
    p = n if at is None or at < 0 else base + at
    expected = _expected(failure)
    if "PARAM_NAME" in expected or "ROLE" in expected:
        return _word_failure(text, p, "ROLE" in expected, index)
    if "VALUE" in expected:
        return _unbalanced_value(text, p, index), None
    return _name_failure(text, original, p, index)


def _name_failure(
    text: str, original: str, p: int, index: LineIndex
) -> tuple[ModelfileSyntaxError, int | None]:
    n = len(text)
    i = p + 1
    while i < n and _is_alpha(text[i]):
        i += 1
    name = text[p:i].replace(DROPPED, "")
    if i >= n:
        hint = f"{name.upper()} needs a value" if name.lower() in COMMANDS else None
        return UnexpectedEOFError(ERR_UNEXPECTED_EOF, index.span(p, n), hint), None
    stop = text[i]
    end = i if stop in _SEPARATORS or stop in "\r\n" else i + 1
    span = index.span(p, end)
    if name.lower() in COMMANDS:
        hint = f"{name.upper()} needs a value after a space, on the same line"
    elif text[p] == DROPPED:
        hint = f"the line starts with the invisible character U+{ord(original[p]):04X}; delete it"
    elif stop not in _SEPARATORS and stop not in "\r\n" and not name:
        hint = None
    else:
        hint = _suggest_command(name)
    error = ParserError(_reference_line(text, i), ERR_INVALID_COMMAND, span, hint)
    return error, _next_line(text, i)


def _suggest_command(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0].upper()}?"
    return (
        "an instruction is one of "
        + ", ".join(c.upper() for c in COMMANDS)
        + '; to continue a value over several lines, wrap it in """'
    )


def _word_failure(
    text: str, p: int, is_role: bool, index: LineIndex
) -> tuple[ModelfileSyntaxError, int | None]:
    """A PARAMETER name or MESSAGE role that does not end in a space or tab."""
    n = len(text)
    i = p + 1
    allowed = _is_alpha if is_role else _NAME_CHARS.__contains__
    while i < n and allowed(text[i]):
        i += 1
    word = text[p + 1 : i]
    keyword = "MESSAGE" if is_role else "PARAMETER"
    usage = (
        "MESSAGE <system|user|assistant> <text>"
        if is_role
        else "PARAMETER <name> <value> (names are letters, digits and _)"
    )
    if i >= n:
        return UnexpectedEOFError(ERR_UNEXPECTED_EOF, index.span(p + 1, n), f"use {usage}"), None
    if is_role and text[i] in _SEPARATORS:
        close = [r for r in MESSAGE_ROLES if r == word.lower()]
        close = close or difflib.get_close_matches(word.lower(), MESSAGE_ROLES, n=1)
        hint = f"did you mean {close[0]}?" if close else "roles are system, user and assistant"
        role_error = ParserError(
            _reference_line(text, i), ERR_INVALID_MESSAGE_ROLE, index.span(p + 1, i), hint
        )
        return role_error, _next_line(text, i)
    end = i if text[i] in "\r\n" else i + 1
    hint = f"{keyword} {word or '<...>'} needs a value: {usage}"
    error = UnexpectedEOFError(
        f"{ERR_UNEXPECTED_EOF}: {word}", index.span(p + 1, max(end, p + 2)), hint
    )
    return error, _next_line(text, i)


def _unbalanced_value(text: str, p: int, index: LineIndex) -> ModelfileSyntaxError:
    """A VALUE that opens a quote and reaches the end of the file without balancing it."""
    n = len(text)
    i = p + 1
    while i < n and text[i] in _SEPARATORS + DROPPED:
        i += 1
    k, count = i, 0
    while k < n and count < 3 and (text[k] == '"' or (count and text[k] == DROPPED)):
        count += text[k] == '"'
        k += 1
    quotes = '"""' if count == 3 else '"'
    hint = f"this {quotes} is never closed: end the value with {quotes} at the end of a line"
    return UnexpectedEOFError(ERR_UNEXPECTED_EOF, index.span(i, k if count == 3 else i + 1), hint)
