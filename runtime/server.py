"""Run the server with uvicorn (what `mfc serve` calls)."""

from __future__ import annotations

import socket
import sys

import uvicorn

from runtime.app import create_app
from runtime.config import ServerConfig
from runtime.gilwatch import start_from_env as start_gil_watch
from runtime.http_timeouts import DeadlineH11Protocol
from runtime.lifecycle import DrainingServer
from toolchain.errors import MfcError
from toolchain.store import Store

#: seconds a thread may keep the GIL while another waits (sys.setswitchinterval)
SWITCH_INTERVAL = 0.001


class BindError(MfcError):
    """The address to serve on is taken or not ours to use."""


def bind(config: ServerConfig) -> socket.socket:
    """A listening socket on the configured address, or a clear error if it is taken."""
    host = config.host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose protocol
    # says TCP, and without it Nagle's algorithm holds each small write for a delayed ACK
    # (~40 ms per keep-alive request and per streamed chunk)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, config.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise BindError(
            f"could not listen on {host}:{config.port}: {exc.strerror or exc}",
            hint="another server (mfc or ollama) may be running there; "
            "set MFC_HOST or OLLAMA_HOST to another address",
        ) from None
    return sock  # not inheritable: no process we start may keep the port open


def make_server(config: ServerConfig, store: Store | None = None) -> uvicorn.Server:
    """A uvicorn server for the app (not started; pass it a socket from `bind`).

    SIGTERM and SIGINT drain it (runtime/lifecycle.py): see `DrainingServer`.
    """
    start_gil_watch()  # a debug probe, off unless MFC_DEBUG_GIL_WATCH is set
    # a thread computing in Python (a template's render) gives the GIL up this soon when the
    # event loop asks for it, not after the default 5 ms: each of the several times a
    # request waits for the GIL
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = create_app(config, store)
    uv = uvicorn.Config(
        app,
        host=config.host or "0.0.0.0",
        port=config.port,
        log_level="warning",
        log_config=None,  # logging is set up by `mfc serve` (runtime/logs.py)
        access_log=False,
        lifespan="on",
        # explicit: with uvloop installed (the ray extra brings it) uvicorn would pick it
        loop="asyncio",
        timeout_graceful_shutdown=5,
        http=DeadlineH11Protocol,  # slow or stalled clients are cut off
    )
    return DrainingServer(uv, app.state.ops, config.grace_period)


def serve(config: ServerConfig, store: Store | None = None) -> None:
    """Serve until SIGTERM/SIGINT (drained, every model unloaded, then return)."""
    sock = bind(config)
    make_server(config, store).run(sockets=[sock])
