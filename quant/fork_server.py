"""Worker processes from a fork server, for a process that must not be forked (a server
with its listening socket, client connections and store lock; a build): a fresh
interpreter started with no descriptor of ours but its pipes forks them instead."""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from quant.child_process import die_with_parent, keep_heap

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


def pool(n: int) -> ProcessPoolExecutor | None:
    """`n` workers from the fork server (None for one: the caller does the work)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if n <= 1:
        return None
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["quant.source", "quant.pipeline"])
    return ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    )


#: how often a worker checks that its owner is still there, where there is no pidfd (s)
PARENT_CHECK_SECONDS = 0.5


def _worker_init(owner: int) -> None:
    """Tie the worker's life to `owner` (the quantizing process), whatever ends that.

    A watcher thread ends the worker as soon as `owner` has exited (a zombie not yet
    reaped counts as exited). The fork server, the worker's parent, exits once every
    worker is gone, and Linux's parent-death signal covers a fork server killed first.
    Ctrl-C and SIGTERM are the owner's to handle: it stops the pool and removes the
    partial file.

    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    keep_heap()
    watch = _owner_handle(owner)
    if watch is None or _exited(watch, timeout=0):
        os._exit(1)
    threading.Thread(target=_watch_owner, args=(watch,), name="owner-watch", daemon=True).start()


def _owner_handle(pid: int) -> int | str | None:
    """Something to watch `pid` by: a pidfd (Linux), else the pid as text; None if gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except (AttributeError, OSError):
        return str(pid)


def _exited(watch: int | str, timeout: float | None) -> bool:
    """Whether the watched process has exited (a zombie counts), waiting up to `timeout`."""
    if isinstance(watch, int):  # a pidfd turns readable when the process exits
        poller = select.poll()
        poller.register(watch, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
    deadline = time.monotonic() + (timeout or 0)
    while True:
        try:
            os.kill(int(watch), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if timeout is not None and time.monotonic() >= deadline:
            return False
        time.sleep(PARENT_CHECK_SECONDS)


def _watch_owner(watch: int | str) -> None:
    _exited(watch, timeout=None)
    os._exit(1)


def stop_fork_server() -> None:
    """Stop the fork server the workers came from, if one runs, and wait for it.

    It is otherwise kept for the next quantization and ends with this process; waiting
    for it makes the workers' CPU time part of this process's children's (`getrusage`),
    which a benchmark needs. Where no pool was ever made, multiprocessing's fork server
    module was never imported and nothing is imported now (it costs ~12 ms of CPU).
    """
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop):
        stop()
