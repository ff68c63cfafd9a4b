"""Decode large request bodies in worker processes, so the server never holds the GIL long.

Python's C JSON decoder keeps the GIL for the whole of one call: 50 MB of body is ~60 ms
during which no other request is answered (issue 13), and a thread does not help. The Go
scanner that explains errors (`runtime.jsonscan`) is pure Python: in a thread it takes the
GIL in 5 ms slices, competing with the event loop for as long as it runs. So bodies that
are not decoded inline go to one of POOL_SIZE processes: the server hands them over chunk
by chunk as they arrived (it never joins them into one 50 MB `bytes`) and gets back what a
handler keeps, `decode`'s result (unknown fields are gone by then) or the ApiError.

Workers come from the fork server (a fresh interpreter holding none of the server's
sockets, see `quant.pipeline`), start at the first large body, and end with the server:
when its end of their pipe closes, at shutdown or however it dies, and by the kernel's
parent-death signal should the fork server go first.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from quant.child_process import die_with_parent
from runtime.errors import ApiError

#: worker processes: one large body each at a time (jsonbody.DECODE_THREADS hand them over)
POOL_SIZE = 2
#: scheduling priority of the workers below the server's (os.nice)
NICENESS = 5


def _worker(conn: Connection) -> None:
    """Decode bodies sent over `conn` until it closes: (shape, chunk count), then chunks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    with contextlib.suppress(OSError):
        os.nice(NICENESS)  # a core for the event loop first: decoding a body can wait
    die_with_parent()
    from runtime.jsonbody import decode

    while True:
        try:
            shape, count = conn.recv()
            body = b"".join([conn.recv_bytes() for _ in range(count)])
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", decode(body, shape))
        except ApiError as exc:
            answer = ("refused", (exc.status, exc.message))
        except Exception as exc:  # a defect: the server reports it as such
            answer = ("failed", f"{type(exc).__name__}: {exc}")
        del body
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


class _Worker:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("forkserver")
        self.conn, theirs = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker, args=(theirs,), name="mfc-decode", daemon=True)
        self.process.start()
        theirs.close()

    def decode(self, chunks: Sequence[bytes], shape: Any) -> dict[str, Any]:
        self.conn.send((shape, len(chunks)))
        for chunk in chunks:  # each write gives the GIL up: no long hold for a large body
            self.conn.send_bytes(chunk)
        kind, value = self.conn.recv()
        if kind == "ok":
            result: dict[str, Any] = value
            return result
        if kind == "refused":
            raise ApiError(*value)
        raise RuntimeError(f"decoding a request body failed: {value}")

    def stop(self) -> None:
        self.conn.close()  # the worker sees EOF and exits
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class DecodePool:
    """POOL_SIZE workers, started on first use; `decode` blocks: call it from a thread."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._started = False

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            for _ in range(POOL_SIZE):
                self._idle.put(None)  # a slot: its worker starts when first needed

    def decode(self, chunks: Sequence[bytes], shape: Any) -> dict[str, Any]:
        """`jsonbody.decode` of the concatenated `chunks`, in a worker process."""
        self._start()
        worker = self._idle.get()
        try:
            if worker is None:
                worker = _Worker()
                with self._lock:
                    self._workers.append(worker)
            try:
                return worker.decode(chunks, shape)
            except (EOFError, OSError):  # the worker died (killed, out of memory)
                self._forget(worker)
                worker = None
                raise RuntimeError("a request body's decoder process died") from None
        finally:
            self._idle.put(worker)

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        with contextlib.suppress(OSError):
            worker.stop()

    def stop(self) -> None:
        """End every worker (they also end on their own when this process exits)."""
        with self._lock:
            workers, self._workers = self._workers, []
            self._idle, self._started = queue.SimpleQueue(), False
        for worker in workers:
            worker.stop()


#: the process's pool (workers start at the first large body)
POOL = DecodePool()


def worker_pids() -> list[int]:
    """Pids of the running workers (for tests and the RSS figure)."""
    return [w.process.pid for w in POOL._workers if w.process.pid is not None]
