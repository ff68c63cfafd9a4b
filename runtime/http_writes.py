"""One socket write per response where uvicorn makes two.

uvicorn's HTTP/1.1 protocol writes a response's status line and headers as soon as the app
starts the response, and its body when the app sends it, though the app sends both in the
same step of the event loop. With TCP_NODELAY each write is its own segment and its own
`send` on loopback, which wakes the client twice: ~0.1-0.3 ms of the event loop's time per
request on a 2-core KVM guest. `CoalescingTransport` gathers what the protocol writes in
one step of the loop and sends it together at the end of that step, or as soon as the
response is complete (`DeadlineH11Protocol.on_response_complete` flushes it).
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps a transport: `write`s made in one step of the loop go out as one, when the
    step ends (or before `close`); everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        """Write what is gathered now."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
