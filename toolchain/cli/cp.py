"""`mfc cp SOURCE DESTINATION`: copy a model (the manifest; blobs are shared)."""

from __future__ import annotations

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options


@click.command()
@click.argument("source")
@click.argument("destination")
@store_options
def command(source: str, destination: str, models: str | None, as_json: bool) -> None:
    """Copy the model SOURCE to DESTINATION (overwriting it); no blob is copied."""
    from toolchain.store import parse_name

    store = open_store(models)
    src = store.resolve(parse_name(source))
    dst = store.copy(src, parse_name(destination))
    if as_json:
        print_json({"source": src.display(), "destination": dst.display()})
    else:
        click.echo(f"copied '{src.display()}' to '{dst.display()}'")
