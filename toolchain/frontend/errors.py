"""The errors the reference's Modelfile parser can give (spec §1.7), as `MfcError`s.

`str(err)` is the reference's exact text (`(line 3): command must be one of ...`,
`unexpected EOF: param1`, `no FROM line`), so API responses can repeat it verbatim;
`err.message` is the same without the `(line N): ` prefix, because a diagnostic already
starts with `path:line:col` (and the reference counts CR and LF of a CRLF as two lines).
"""

from __future__ import annotations

from toolchain.errors import MfcError, Span

#: the keywords the reference accepts, in the order its error message lists them
REFERENCE_COMMANDS = (
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
#: mfc's own instructions on top of the reference's
EXTENSION_COMMANDS = ("quantize", "imatrix")
COMMANDS = REFERENCE_COMMANDS + EXTENSION_COMMANDS

MESSAGE_ROLES = ("system", "user", "assistant")

ERR_INVALID_COMMAND = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", '
    '"renderer", "parser", "parameter", "message", or "requires"'
)
ERR_INVALID_MESSAGE_ROLE = 'message role must be one of "system", "user", or "assistant"'
ERR_MISSING_FROM = "no FROM line"
ERR_UNEXPECTED_EOF = "unexpected EOF"


class ModelfileSyntaxError(MfcError):
    """The input is not a Modelfile: the reference's `parser.ParseFile` rejects it too."""


class ParserError(ModelfileSyntaxError):
    """The reference's `*ParserError{LineNumber, Msg}` (unknown instruction, bad role)."""

    def __init__(
        self, line_number: int, msg: str, span: Span | None = None, hint: str | None = None
    ) -> None:
        super().__init__(msg, span, hint)
        self.line_number = line_number
        self.msg = msg

    def __str__(self) -> str:
        return f"(line {self.line_number}): {self.msg}" if self.line_number > 0 else self.msg


class UnexpectedEOFError(ModelfileSyntaxError):
    """The reference's `io.ErrUnexpectedEOF`, bare or wrapped as `unexpected EOF: <name>`."""


class MissingFromError(ModelfileSyntaxError):
    """The reference's `errMissingFrom`: no FROM instruction at all."""

    def __init__(self, span: Span | None = None, hint: str | None = None) -> None:
        super().__init__(ERR_MISSING_FROM, span, hint)
