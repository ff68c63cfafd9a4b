"""Run the server with uvicorn (what `mfc serve` calls)."""

from __future__ import annotations

import logging

import uvicorn

from runtime.app import create_app
from runtime.config import ServerConfig
from toolchain.store import Store

log = logging.getLogger("mfc.serve")


def make_server(config: ServerConfig, store: Store | None = None) -> uvicorn.Server:
    """A uvicorn server for the app, bound where `config` says (not started)."""
    app = create_app(config, store)
    uv = uvicorn.Config(
        app,
        host=config.host or "0.0.0.0",
        port=config.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(uv)


def serve(config: ServerConfig, store: Store | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM unload every model, then exit)."""
    server = make_server(config, store)
    server.run()
