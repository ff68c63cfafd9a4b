"""Pull and push as iterators of progress events, for the server's /api/pull and /api/push.

`pull_events(name)` yields the reference's ProgressResponse stream (`pulling manifest`, ...,
`success`) while the transfer runs on a worker thread. An error raises its `MfcError` from
the iterator after the events that came before it, so the route can send it as the final
`{"error": ...}` line (or as the whole response, when nothing was sent yet). `close()` (the
client went away) stops the transfer at its next progress event; a partial download stays
resumable.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

from toolchain.errors import MfcError
from toolchain.progress import ProgressCallback, ProgressEvent
from toolchain.registry.pull import pull_model
from toolchain.registry.push import push_model
from toolchain.store.store import Store


class TransferCancelledError(MfcError):
    """The consumer of the event stream went away."""


_DONE = object()


def pull_events(name: str, *, insecure: bool = False, store: Store | None = None) -> EventStream:
    """Pull `name` into the store, yielding progress events; ends with `success`."""
    return EventStream(
        lambda progress: pull_model(name, store=store, insecure=insecure, progress=progress)
    )


def push_events(name: str, *, insecure: bool = False, store: Store | None = None) -> EventStream:
    """Push `name` to its registry, yielding progress events; ends with `success`."""
    return EventStream(
        lambda progress: push_model(name, store=store, insecure=insecure, progress=progress)
    )


class EventStream(Iterator[ProgressEvent]):
    """The events of a transfer running on its own thread.

    `next()` blocks until the next event; the transfer's error is raised from it. `close()`
    may be called from any thread, even while another one waits in `next()`.
    """

    def __init__(self, job: Callable[[ProgressCallback], object]) -> None:
        self._events: queue.Queue[object] = queue.Queue()
        self._cancelled = threading.Event()
        self._finished = False
        self._worker = threading.Thread(target=self._work, args=(job,), name="mfc-transfer")
        self._worker.daemon = True
        self._worker.start()

    def _progress(self, event: ProgressEvent) -> None:
        if self._cancelled.is_set():
            raise TransferCancelledError("transfer cancelled")
        self._events.put(event)

    def _work(self, job: Callable[[ProgressCallback], object]) -> None:
        try:
            job(self._progress)
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._events.put(exc)
        else:
            self._events.put(_DONE)

    def __next__(self) -> ProgressEvent:
        if self._finished:
            raise StopIteration
        item = self._events.get()
        if isinstance(item, ProgressEvent):
            return item
        self._finished = True
        if item is _DONE:
            raise StopIteration
        assert isinstance(item, BaseException)
        if isinstance(item, MfcError):
            raise item
        raise MfcError(f"transfer failed: {item}") from item

    def close(self) -> None:
        """Stop the transfer at its next progress event (a partial pull stays resumable)."""
        self._cancelled.set()

    def __del__(self) -> None:
        self._cancelled.set()
