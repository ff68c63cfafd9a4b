"""Signals and graceful drain: what `mfc serve` does on SIGTERM and Ctrl-C.

The first SIGTERM or SIGINT starts a drain: readiness turns 503, the listening socket is
closed (a proxy's next connection is refused and goes to another replica at once), and
requests arriving on connections already open get 503 with `Retry-After`. Requests in
flight run to completion for up to the grace period; generations still running then are
ended, each stream with a last error item. Then uvicorn closes the connections, the
lifespan unloads every model, and the process exits 0. A second signal cuts the
generations at once instead of waiting out the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Generator

import uvicorn

from runtime.ops import Ops

log = logging.getLogger("mfc.serve")

#: how long cut streams get to send their last item before connections are closed
FLUSH_SECONDS = 5.0


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains its app's requests on SIGTERM/SIGINT, then exits 0."""

    def __init__(self, config: uvicorn.Config, ops: Ops, grace_period: float) -> None:
        super().__init__(config)
        self.ops = ops
        self.grace_period = grace_period
        self._drain: asyncio.Task[None] | None = None
        self._cut_now = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's own handling stops at once and re-raises the signal after its shutdown
        # (exit status 143); a drain wants the signal to start it, and a clean exit.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT)
        for sig in handled:
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            yield
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._drain is None:
            log.info("%s: draining (grace period %gs)", name, self.grace_period)
            self._drain = asyncio.get_running_loop().create_task(self.drain())
        else:
            log.info("%s again: ending the requests in flight now", name)
            self._cut_now.set()

    async def drain(self) -> None:
        """Refuse new work, let in-flight requests finish, then let uvicorn shut down."""
        self.ops.begin_drain()
        for server in getattr(self, "servers", []):
            server.close()  # refuse new connections now: a proxy retries elsewhere
        cut_now = asyncio.ensure_future(self._cut_now.wait())
        idle = asyncio.ensure_future(self.ops.wait_idle(self.grace_period))
        try:
            await asyncio.wait({cut_now, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut_now.cancel()
        if not (idle.done() and idle.result()):
            idle.cancel()
            count = self.ops.cut()
            log.warning("grace period over: ended %d generation(s) in flight", count)
            if not await self.ops.wait_idle(FLUSH_SECONDS):
                log.warning("%d request(s) still open; closing them", len(self.ops.active))
        self.should_exit = True
