"""Slow and stalled clients are cut off (runtime/http_timeouts.py): headers must arrive
within a deadline that bytes do not extend, a body may not stall, while a well-behaved
client on another connection is answered all along."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fixtures.local_server import free_port, local_server
from runtime import http_timeouts
from runtime.http_timeouts import DeadlineH11Protocol


def closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (None if it has not after `seconds`), sending
    one byte of `dribble` every 0.5 s meanwhile."""
    start = time.monotonic()
    sock.settimeout(0.5)
    sent = 0
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - start
        if sent < len(dribble):
            try:
                sock.sendall(dribble[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
            sent += 1
    return None


async def echo_length(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.fixture
def quick_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """uvicorn with the guarded protocol, deadlines of 1 s, in a thread of this process."""
    monkeypatch.setattr(http_timeouts, "HEADER_TIMEOUT", 1.0)
    monkeypatch.setattr(http_timeouts, "BODY_IDLE_TIMEOUT", 1.0)
    with serving(echo_length) as port:
        yield port


@contextlib.contextmanager
def serving(app: Any) -> Iterator[int]:
    """`app` served by uvicorn with the guarded protocol in a thread; yields the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=DeadlineH11Protocol,
            log_level="error",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_header_deadline_is_not_extended_by_dribbling(quick_server: int) -> None:
    with socket.create_connection(("127.0.0.1", quick_server)) as idle:
        assert closed_within(idle, 10) is not None  # sent nothing at all
    with socket.create_connection(("127.0.0.1", quick_server)) as slow:
        took = closed_within(slow, 10, dribble=b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 50)
        assert took is not None  # 50 bytes at 2 per second would need 25 s


def test_stalled_body_is_cut_off_but_a_slow_one_is_not(quick_server: int) -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with socket.create_connection(("127.0.0.1", quick_server)) as stalled:
        stalled.sendall(head + b"x" * 10)
        assert closed_within(stalled, 10) is not None
    with socket.create_connection(("127.0.0.1", quick_server)) as moving:
        moving.sendall(head)
        assert closed_within(moving, 3, dribble=b"y" * 6) is None  # a byte every 0.5 s
        moving.sendall(b"y" * 94)
        moving.settimeout(5)
        answer = b""
        while not answer.endswith(b"0\r\n\r\n"):  # the chunked body's end
            part = moving.recv(4096)
            assert part, answer
            answer += part
        assert answer.startswith(b"HTTP/1.1 200") and b"\r\n100\r\n" in answer


def test_keep_alive_connection_gets_a_new_header_deadline(quick_server: int) -> None:
    with httpx.Client() as client:
        for _ in range(3):  # one connection, several requests, pauses under the deadline
            assert client.post(f"http://127.0.0.1:{quick_server}/", content=b"abc").text == "3"
            time.sleep(0.5)


def test_a_response_leaves_in_one_write_before_the_app_returns() -> None:
    """A complete response is written at once, status line, headers and body together,
    not when the app's step of the event loop ends: what the app does after its last send
    (the access log, metrics) does not hold the client's answer back."""
    received = threading.Event()
    sent_before_return: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        head = {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"4")],
        }
        await send(head)
        await send({"type": "http.response.body", "body": b"done"})
        # blocks the loop: only bytes already written can reach the client meanwhile
        sent_before_return.append(received.wait(10))

    with serving(app) as port:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(30)
            first = sock.recv(65536)
            received.set()
        for _ in range(100):
            if sent_before_return:
                break
            time.sleep(0.05)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"done")
    assert sent_before_return == [True]


def test_mfc_serve_cuts_off_a_slow_header_client(tmp_path: Path) -> None:
    with local_server({"MFC_MODELS": str(tmp_path / "models")}) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"GET /api/version HTTP/1.1\r\n")
            assert httpx.get(url + "/api/version").status_code == 200  # others are served
            took = closed_within(slow, http_timeouts.HEADER_TIMEOUT + 20, dribble=b"X" * 200)
            assert took is not None and took >= http_timeouts.HEADER_TIMEOUT - 1
