"""Modelfile text -> IR: grammar/modelfile.lark (LALR, contextual lexer) -> parse tree -> IR.

The grammar is the definition of the syntax: it accepts exactly what the reference's
rune-level state machine accepts (spec §1.4-§1.6) and its tokens carry the positions.
Three things are done here by hand, each for a reason the grammar cannot express:

* byte decoding and the marking of dropped characters (decode.py), which happen before
  any syntax;
* turning a raw VALUE token into the value (drop the marked characters, trim, unquote),
  which is arithmetic on the token, not syntax;
* the wording of a rejection (syntax_errors.py): Lark says where and in which state it
  stopped; the reference's §1.7 message depends on the characters from there on.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from grammar import grammar_text
from toolchain.errors import MfcError, Span
from toolchain.frontend.decode import DROPPED, decode_modelfile, mark_dropped
from toolchain.frontend.errors import MissingFromError, ModelfileSyntaxError
from toolchain.frontend.positions import LineIndex
from toolchain.frontend.syntax_errors import describe_failure
from toolchain.ir import (
    INSTRUCTION_CLASSES,
    Comment,
    From,
    Instruction,
    Message,
    Modelfile,
    Parameter,
)

_BLANKS = " \t\r\n"
_SKIPPED = " \t" + DROPPED


@cache
def modelfile_parser() -> Lark:
    """The Lark parser for grammar/modelfile.lark (built once per process)."""
    return Lark(grammar_text("modelfile"), parser="lalr", lexer="contextual")


def unquote(s: str) -> tuple[str, bool]:
    """The reference's `unquote` on a trimmed value: `(value, balanced)`; no escapes (§1.6)."""
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def _quote_width(s: str) -> int:
    return 3 if s.startswith('"""') else 1 if s.startswith('"') else 0


def _skip_quotes(raw: str, i: int, count: int, step: int) -> int:
    """From `i`, pass `count` quotes (dropped characters between them) going by `step`."""
    for k in range(count):
        if k:
            while raw[i] == DROPPED:
                i += step
        i += step
    return i


def _read_value(raw: str, start: int, index: LineIndex) -> tuple[str, Span, int]:
    """A VALUE token at `start` -> (value, span of its text inside the quotes, end offset
    of the value as written, closing quotes included)."""
    buffer = raw[1:].replace(DROPPED, "").strip(_BLANKS)
    value, _ = unquote(buffer)
    width = _quote_width(buffer)
    i = 1
    while i < len(raw) and raw[i] in _SKIPPED:
        i += 1
    j = len(raw)
    while j > i and raw[j - 1] in _SKIPPED + "\r\n":
        j -= 1
    written_end = j
    if width:
        i = _skip_quotes(raw, i, width, 1)
        j = _skip_quotes(raw, j - 1, width, -1) + 1
    return value, index.span(start + i, start + max(i, j)), start + written_end


def _build(
    tree: Tree[Token], base: int, index: LineIndex, original: str
) -> tuple[list[Instruction], list[Comment]]:
    instructions: list[Instruction] = []
    comments: list[Comment] = []
    for item in tree.children:
        assert isinstance(item, Tree)
        tokens = [tok for tok in item.children if isinstance(tok, Token)]
        if item.data == "comment":
            (tok,) = tokens
            start = base + (tok.start_pos or 0)
            end = base + (tok.end_pos or 0)
            comments.append(Comment(index.span(start, end), original[start:end]))
            continue
        keyword, *middle, value_tok = tokens
        kind = str(item.data)
        begin = base + (keyword.start_pos or 0)
        value, value_span, end = _read_value(value_tok, base + (value_tok.start_pos or 0), index)
        span = index.span(begin, end)
        cls = INSTRUCTION_CLASSES[kind]
        if cls is Parameter:
            ins: Instruction = Parameter(span, value, middle[0][1:], value_span=value_span)
        elif cls is Message:
            ins = Message(span, value, middle[0][1:], value_span=value_span)
        else:
            ins = cls(span, value, value_span=value_span)
        instructions.append(ins)
    return instructions, comments


def _parse_text(
    text: str, path: str, recover: bool
) -> tuple[Modelfile, list[ModelfileSyntaxError]]:
    marked = mark_dropped(text)
    index = LineIndex(text, path)
    parser = modelfile_parser()
    instructions: list[Instruction] = []
    comments: list[Comment] = []
    errors: list[ModelfileSyntaxError] = []
    pos = 0
    while True:
        try:
            done = parser.parse(marked[pos:])
        except UnexpectedInput as failure:
            error, resume = describe_failure(marked, text, pos, failure, index)
            if not recover:
                raise error from None
            errors.append(error)
            # everything before the line the failing instruction starts on parses cleanly
            at = failure.pos_in_stream
            failed_at = len(marked) if at is None or at < 0 else pos + at
            line_start = max(marked.rfind("\r", pos, failed_at), marked.rfind("\n", pos, failed_at))
            prefix_end = line_start + 1 if line_start >= 0 else pos
            more, more_comments = _build(parser.parse(marked[pos:prefix_end]), pos, index, text)
            instructions += more
            comments += more_comments
            if resume is None:
                break
            pos = resume
            continue
        more, more_comments = _build(done, pos, index, text)
        instructions += more
        comments += more_comments
        break
    mf = Modelfile(tuple(instructions), path, text, tuple(comments))
    return mf, errors


def _text_of(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return decode_modelfile(data)


def parse_modelfile(data: bytes | str, path: str = "<stdin>") -> Modelfile:
    """Parse a Modelfile exactly as the reference's `parser.ParseFile` does.

    `data` is the file's bytes (a `str` is taken as its UTF-8 encoding). Raises a
    `ModelfileSyntaxError` (`ParserError`, `UnexpectedEOFError`, `MissingFromError`) with the
    reference's message, a span and a hint at the first rejection.
    """
    mf, _ = _parse_text(_text_of(data), path, recover=False)
    if not any(isinstance(ins, From) for ins in mf.instructions):
        raise MissingFromError(
            Span(path, 1, 1, 1, 2),
            "a Modelfile starts from a model: FROM <name>, a GGUF file or a safetensors folder",
        )
    return mf


def parse_recovering(
    data: bytes | str, path: str = "<stdin>"
) -> tuple[Modelfile, list[ModelfileSyntaxError]]:
    """Parse as far as possible: every syntax error (resuming at the next line after each)
    and the instructions outside them. No FROM requirement; `check_modelfile` reports that."""
    return _parse_text(_text_of(data), path, recover=True)


def read_modelfile_bytes(path: str | Path) -> bytes:
    """The bytes of a Modelfile (`-` is stdin), or an `MfcError` saying why not."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MfcError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_modelfile(path: str | Path) -> Modelfile:
    """Read and parse the Modelfile at `path` (see `parse_modelfile`)."""
    return parse_modelfile(read_modelfile_bytes(path), str(path))
