"""The one family of errors a user can cause, and the source spans they point at."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file: 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "end_line": self.end_line,
            "end_col": self.end_col,
        }


class MfcError(Exception):
    """An error the user can cause and fix: printed as a diagnostic, never as a traceback.

    `span` points at the Modelfile (or template) text that caused it, when there is one;
    `hint` is an optional second line telling the user what to do about it.
    """

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MfcError):
    """The command line itself is wrong (exit code 2)."""
