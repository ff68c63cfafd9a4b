"""uvicorn's HTTP/1.1 protocol with the read deadlines it lacks (a slowloris guard).

uvicorn only times out a connection that is idle *between* requests, and any byte resets
that; a client that connects and sends nothing, or one header byte every few seconds, or
stops in the middle of a body, would hold a connection (and its memory) forever. Here:

- a request's headers must be complete within `HEADER_TIMEOUT` seconds of the connection
  opening or of the previous response (bytes arriving do not extend it: that is Go's
  `ReadHeaderTimeout`);
- a request body may stall at most `BODY_IDLE_TIMEOUT` seconds between two reads (a slow
  upload that keeps moving is fine), unless the app is the one not reading.

A connection over its deadline is closed; a request in progress sees a disconnect.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.http_writes import CoalescingTransport

HEADER_TIMEOUT = 10.0
BODY_IDLE_TIMEOUT = 60.0


class DeadlineH11Protocol(H11Protocol):
    """`H11Protocol` with a header deadline and a body idle timeout."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # a response's head and body leave in one write (runtime/http_writes.py)
        coalescing: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(coalescing)
        self._arm(HEADER_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm(BODY_IDLE_TIMEOUT)  # restarted by every chunk
        elif state is not h11.IDLE:  # the request is in: the response is the app's business
            self._disarm()
        # IDLE: headers not complete yet; the deadline set before keeps running

    def on_response_complete(self) -> None:
        # the whole response leaves now, not when the loop's step ends: the app's code
        # after its last send (metrics, the access log: ~0.15 ms) runs after the client has it
        cast(CoalescingTransport, self.transport).flush()
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(HEADER_TIMEOUT)  # for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY and self.flow.read_paused:
            self._arm(seconds)  # the app has not read what it has: not the client's fault
            return
        if state in (h11.IDLE, h11.SEND_BODY):
            self.transport.close()
