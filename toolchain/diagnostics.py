"""Diagnostics: what `mfc check` reports and how every command prints a user error.

Format (one diagnostic):

    path:line:col: error: message
        FROM ./missing.gguf
             ^~~~~~~~~~~~~~
    hint: ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from toolchain.errors import MfcError, Span

Severity = Literal["error", "warning"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    message: str
    span: Span | None = None
    hint: str | None = None

    @classmethod
    def from_error(cls, err: MfcError) -> Diagnostic:
        return cls("error", err.message, err.span, err.hint)

    def to_json(self, file: str | None = None) -> dict[str, object]:
        """The `mfc check --json` record."""
        span = self.span
        return {
            "file": span.file if span else file,
            "line": span.line if span else None,
            "col": span.col if span else None,
            "end_line": span.end_line if span else None,
            "end_col": span.end_col if span else None,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


def render(diag: Diagnostic, source: str | None = None, file: str | None = None) -> str:
    """Render for a terminal: location, message, the source line with a caret, the hint."""
    span = diag.span
    if span is None:
        head = f"{file}: " if file else ""
        lines = [f"{head}{diag.severity}: {diag.message}"]
    else:
        lines = [f"{span.file}:{span.line}:{span.col}: {diag.severity}: {diag.message}"]
        if source is not None:
            lines.extend(_excerpt(source, span))
    if diag.hint:
        lines.append(f"hint: {diag.hint}")
    return "\n".join(lines)


def _excerpt(source: str, span: Span) -> list[str]:
    # spans break lines at CR, LF, CRLF only; str.splitlines also splits at \v, \f, U+2028
    src_lines = _LINE_BREAK.split(source)
    if not 1 <= span.line <= len(src_lines):
        return []
    text = src_lines[span.line - 1]
    start = max(span.col - 1, 0)
    end = span.end_col - 1 if span.end_line == span.line else len(text)
    end = max(end, start + 1)
    # keep tabs so the caret lines up under the same columns the terminal shows
    pad = "".join(ch if ch == "\t" else " " for ch in text[:start])
    return ["    " + text, "    " + pad + "^" + "~" * (end - start - 1)]
