"""Pull and push as iterators of progress events, for the server's /api/pull and /api/push.

`pull_events(name)` yields the reference's ProgressResponse stream (`pulling manifest`, ...,
`success`) while the transfer runs on a worker thread. An error raises its `MfcError` from
the iterator after the events that came before it, so the route can send it as the final
`{"error": ...}` line (or as the whole response, when nothing was sent yet). Closing the
iterator early (the client went away) stops the transfer at its next progress event; a
partial download stays resumable.
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


def pull_events(
    name: str, *, insecure: bool = False, store: Store | None = None
) -> Iterator[ProgressEvent]:
    """Pull `name` into the store, yielding progress events; ends with `success`."""
    return _run(
        lambda progress: pull_model(name, store=store, insecure=insecure, progress=progress)
    )


def push_events(
    name: str, *, insecure: bool = False, store: Store | None = None
) -> Iterator[ProgressEvent]:
    """Push `name` to its registry, yielding progress events; ends with `success`."""
    return _run(
        lambda progress: push_model(name, store=store, insecure=insecure, progress=progress)
    )


def _run(job: Callable[[ProgressCallback], object]) -> Iterator[ProgressEvent]:
    events: queue.Queue[object] = queue.Queue()
    cancelled = threading.Event()

    def progress(event: ProgressEvent) -> None:
        if cancelled.is_set():
            raise TransferCancelledError("transfer cancelled")
        events.put(event)

    def work() -> None:
        try:
            job(progress)
        except BaseException as exc:  # handed to the consumer, re-raised there
            events.put(exc)
        else:
            events.put(_DONE)

    worker = threading.Thread(target=work, name="mfc-transfer", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                if isinstance(item, MfcError):
                    raise item
                raise MfcError(f"transfer failed: {item}") from item
            assert isinstance(item, ProgressEvent)
            yield item
    finally:
        cancelled.set()
