"""The listening socket `mfc serve` makes, seen from the connections it accepts."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from runtime.config import ServerConfig
from runtime.server import bind, make_server
from toolchain.store import Store


def test_accepted_connections_have_tcp_nodelay(tmp_path: Path) -> None:
    """A keep-alive client's small requests must not wait for delayed ACKs (Nagle): every
    connection the server accepts has TCP_NODELAY set, as Go's net/http sets it."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    config = ServerConfig(host="127.0.0.1", port=port)
    server = make_server(config, Store.open(tmp_path))
    sock = bind(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/api/version").status_code == 200
            # the connection stays open (keep-alive): look at the server's end of it
            connections = list(server.server_state.connections)
            assert connections
            for conn in connections:
                peer = conn.transport.get_extra_info("socket")
                assert peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
