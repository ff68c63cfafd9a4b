"""A reader/writer lock over a whole store, so concurrent mfc processes can't corrupt it.

Builds, copies and imports hold it shared (they only add files, and blob writes are atomic
renames of identical content); deleting and garbage collection hold it exclusively, so a
blob another build has just decided to reuse is never removed under it. The lock is
`flock(2)` on the store's root folder itself: no lock file is added to the store.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def store_lock(
    root: Path, *, exclusive: bool, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the store lock for the duration of the block (creating the root if needed).

    `on_wait` is called once if another process holds the lock and we have to wait.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
