"""Progress events: passes report through a callback; the CLI draws bars or prints JSON lines.

Events carry the reference's fields (`status`, `digest`, `total`, `completed`), so the same
stream feeds `mfc build --json`, the progress bars and the server's `/api/create` stream.
"""

from __future__ import annotations

import threading
import time
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
#: called with the number of bytes done so far
ByteProgress = Callable[[int], None]


def no_progress(_event: ProgressEvent) -> None:
    """A callback that drops every event (library use, tests)."""


class ByteMeter:
    """One status's byte count against its total, reported as `ProgressEvent`s, throttled.

    The first count and every final one (`done >= total`) are reported; a count in between
    only once it is a `steps`-th of the total past the last report and `interval` seconds
    after it. `update` is a `ByteProgress` and may be called from several threads. As in
    the reference's events, a count of 0 is left out (`completed` absent).
    """

    def __init__(
        self,
        progress: ProgressCallback,
        status: str,
        total: int,
        digest: str | None = None,
        *,
        steps: int = 0,
        interval: float = 0.0,
    ) -> None:
        self.progress, self.status, self.total, self.digest = progress, status, total, digest
        self._step = max(total // steps, 1) if steps else 0
        self._interval = interval
        self._last: int | None = None
        self._last_time = 0.0
        self._lock = threading.Lock()

    def update(self, done: int) -> None:
        now = time.monotonic()
        with self._lock:
            if (
                self._last is not None
                and done < self.total
                and (done - self._last < self._step or now - self._last_time < self._interval)
            ):
                return
            self._last, self._last_time = done, now
            self.progress(ProgressEvent(self.status, self.digest, self.total, done or None))
