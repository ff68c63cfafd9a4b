"""Progress events: passes report through a callback; the CLI draws bars or prints JSON lines.

Events carry the reference's fields (`status`, `digest`, `total`, `completed`), so the same
stream feeds `mfc build --json`, the progress bars and the server's `/api/create` stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    def to_json(self) -> dict[str, object]:
        """The reference's ProgressResponse: absent fields are omitted."""
        out: dict[str, object] = {"status": self.status}
        if self.digest is not None:
            out["digest"] = self.digest
        if self.total is not None:
            out["total"] = self.total
        if self.completed is not None:
            out["completed"] = self.completed
        return out


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    """A callback that drops every event (library use, tests)."""
