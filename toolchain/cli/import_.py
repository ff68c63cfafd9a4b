"""`mfc import model.tar`: read models from an OCI image-layout tarball into the store."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.store_options import open_store, store_options


@click.command()
@click.argument("tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Store the model under this name (the tarball must hold one model).")
@store_options
def command(tarball: Path, name: str | None, models: str | None, as_json: bool) -> None:
    """Import the models of TARBALL (written by `mfc export`, or any OCI layout of models).

    Every blob is checked against its digest before anything is added to the store.
    """
    from toolchain.registry.oci_tarball import import_models

    with reporter(as_json) as progress:
        done = import_models(tarball, store=open_store(models), name=name, progress=progress)
    if as_json:
        print_json({"models": [m.to_json() for m in done]})
        return
    for model in done:
        click.echo(f"imported {model.name.display()} ({model.digest[:12]})")
