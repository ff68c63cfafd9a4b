"""`mfc export NAME... -o model.tar`: models as a reproducible OCI image-layout tarball."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.store_options import open_store, store_options


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tarball to write.",
)
@store_options
def command(names: tuple[str, ...], output: Path, models: str | None, as_json: bool) -> None:
    """Write the models NAMES to an OCI image-layout tarball (same models, same bytes)."""
    from toolchain.registry.oci_tarball import export_models

    with reporter(as_json) as progress:
        done = export_models(list(names), output, store=open_store(models), progress=progress)
    if as_json:
        print_json({"output": str(output), "models": [m.to_json() for m in done]})
        return
    for model in done:
        click.echo(f"exported {model.name.display()} ({model.digest[:12]}) to {output}")
