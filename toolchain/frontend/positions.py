"""Source positions: character offsets -> 1-based line and column `Span`s."""

from __future__ import annotations

import bisect

from toolchain.errors import Span


class LineIndex:
    """Offsets -> 1-based (line, col); CRLF, CR and LF each end one line."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.starts = [0]
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "\r":
                i += 2 if text.startswith("\n", i + 1) else 1
                self.starts.append(i)
                continue
            i += 1
            if ch == "\n":
                self.starts.append(i)

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1

    def span(self, start: int, end: int) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(max(end, start))
        return Span(self.path, line, col, end_line, end_col)
