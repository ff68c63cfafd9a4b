"""`mfc serve`: the Ollama- and OpenAI-compatible HTTP server over the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from toolchain.cli.store_options import models_option

if TYPE_CHECKING:
    from runtime.config import ServerConfig
    from toolchain.store import Store


def prune_at_start(store: Store) -> None:
    """Remove what no model uses, as the reference's server does when it starts (skipped
    under MFC_NOPRUNE / OLLAMA_NOPRUNE, or while another process holds the store)."""
    import logging

    from toolchain.errors import MfcError
    from toolchain.store.store import no_prune

    log = logging.getLogger("mfc.serve")
    if no_prune() or not store.root.is_dir():
        return
    try:
        done = store.collect_garbage(wait=False)
    except (MfcError, OSError) as exc:
        log.warning("not pruning unused blobs: %s", exc)
        return
    if done.blobs or done.temp_files:
        log.info(
            "pruned %d unused blob(s) (%d bytes) and %d stale temp file(s)",
            len(done.blobs),
            done.bytes,
            done.temp_files,
        )


@click.command()
@click.option(
    "--host",
    metavar="HOST:PORT",
    help="Address to bind (default: $MFC_HOST, $OLLAMA_HOST, 127.0.0.1:11434).",
)
@models_option
@click.option("-v", "--verbose", is_flag=True, help="Log llama.cpp's own messages too.")
@click.option(
    "--preload",
    metavar="NAME",
    multiple=True,
    help="Load this model before /ready reports ready (repeatable; default: $MFC_PRELOAD).",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM, how long requests in flight may run on (default: $MFC_GRACE_PERIOD, 30).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Access and event log lines as text or JSON (default: $MFC_LOG_FORMAT, text).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Serve on a Ray cluster with Ray Serve (needs mfc[ray]): ADDRESS, $RAY_ADDRESS, "
    "or a local cluster started for this run. Scaling: MFC_RAY_* (README).",
)
def command(
    *,
    ray_address: str | None,
    host: str | None,
    models: str | None,
    verbose: bool,
    preload: tuple[str, ...],
    grace_period: float | None,
    log_format: str | None,
) -> None:
    """Serve the store's models over Ollama's and OpenAI's HTTP APIs until interrupted.

    At start, blobs no model uses are removed (MFC_NOPRUNE=1 or OLLAMA_NOPRUNE=1 keeps
    them). Reads the reference's environment: OLLAMA_HOST, OLLAMA_ORIGINS, OLLAMA_KEEP_ALIVE,
    OLLAMA_NUM_PARALLEL, OLLAMA_MAX_LOADED_MODELS, OLLAMA_MAX_QUEUE,
    OLLAMA_CONTEXT_LENGTH, OLLAMA_FLASH_ATTENTION, OLLAMA_KV_CACHE_TYPE; and MFC_PRELOAD,
    MFC_GRACE_PERIOD, MFC_LOG_FORMAT. SIGTERM or Ctrl-C drains: new requests get 503,
    requests in flight finish within the grace period, then models unload and it exits 0.
    """
    import dataclasses
    import os
    from pathlib import Path

    from runtime.config import ServerConfig, parse_host
    from runtime.logs import configure_logging
    from runtime.ops import check_preload
    from runtime.server import bind, make_server
    from toolchain import __version__
    from toolchain.store import Store

    config = ServerConfig.from_env()
    if host:
        address, port = parse_host(host)
        config = dataclasses.replace(config, host=address, port=port)
    if models:
        config = dataclasses.replace(config, models_root=Path(models))
    if preload:
        config = dataclasses.replace(config, preload=tuple(preload))
    if grace_period is not None:
        config = dataclasses.replace(config, grace_period=grace_period)
    if log_format:
        config = dataclasses.replace(config, log_format=log_format)
    configure_logging(config.log_format, verbose)
    if ray_address is not None:
        # no ADDRESS: $RAY_ADDRESS, else a new local cluster (never a stale one's address)
        serve_on_ray(config, ray_address or os.environ.get("RAY_ADDRESS") or "local")
        return
    store = Store.open(config.models_root)
    check_preload(store, config.preload)
    sock = bind(config)
    prune_at_start(store)
    server = make_server(config, store)
    click.echo(
        f"mfc {__version__} listening on {config.host or '0.0.0.0'}:{config.port} "
        f"(store {store.root})",
        err=True,
    )
    server.run(sockets=[sock])


def serve_on_ray(config: ServerConfig, address: str) -> None:
    """Deploy on Ray Serve and wait for SIGTERM/SIGINT; then remove the app (runtime/ray_serve)."""
    import signal
    import threading

    try:
        from runtime import ray_serve
    except ImportError as exc:
        raise click.ClickException(
            f"--ray needs Ray Serve ({exc.name} is missing): pip install 'mfc[ray]'"
        ) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ray_serve.deploy(config, ray_serve.RaySettings.from_env(), address, replica_logs=True)
    click.echo(f"mfc serving on Ray at {config.base_url}", err=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        ray_serve.shutdown()
