"""`mfc prune`: remove what no model uses from the store (the server does it at start)."""

from __future__ import annotations

import click

from toolchain.cli.human import human_size
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options


@click.command()
@store_options
def command(models: str | None, as_json: bool) -> None:
    """Delete blobs no model references, temp files of writers that are gone, and empty
    manifest folders, as `mfc serve` does when it starts (unless MFC_NOPRUNE or
    OLLAMA_NOPRUNE is set).

    Build intermediates a model in the store still uses (the F16 a quantized model was made
    from: see `mfc cache`) are kept; those of removed models go. Holds the store's
    exclusive lock, so it waits for builds and pulls in progress. A blob uploaded to a
    server (POST /api/blobs) for a create not yet sent is removed too.
    """
    store = open_store(models)
    if not store.root.is_dir():  # nothing to do, and nothing to create
        garbage_blobs: list[str] = []
        freed = temps = folders = 0
    else:
        done = store.collect_garbage(
            on_wait=lambda: click.echo("waiting for another mfc process using the store", err=True)
        )
        garbage_blobs, freed, temps, folders = done.blobs, done.bytes, done.temp_files, done.folders
    if as_json:
        print_json(
            {
                "status": "success",
                "removed_blobs": garbage_blobs,
                "freed": freed,
                "temp_files": temps,
                "folders": folders,
            }
        )
        return
    click.echo(
        f"removed {len(garbage_blobs)} unused blob(s), {human_size(freed)} freed"
        + (f"; {temps} stale temp file(s)" if temps else "")
    )
