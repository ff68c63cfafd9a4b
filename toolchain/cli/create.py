"""`mfc create NAME [-f Modelfile]`: the reference's spelling of `mfc build -t NAME`."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.build import run_build
from toolchain.cli.store_options import insecure_option, quantize_option, store_options


@click.command()
@click.argument("name")
@click.option(
    "-f",
    "--file",
    "file_",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The Modelfile (default ./Modelfile; without one, FROM the current folder).",
)
@quantize_option
@insecure_option
@store_options
def command(
    *,
    name: str,
    file_: str | None,
    quantize: str | None,
    insecure: bool,
    models: str | None,
    as_json: bool,
) -> None:
    """Create the model NAME from a Modelfile, as `ollama create` does."""
    from toolchain.frontend.parse import read_modelfile_bytes

    if file_ is None and not Path("Modelfile").exists():
        data, path, folder = b"FROM .\n", "<default Modelfile>", Path.cwd()
    else:
        path = file_ or "Modelfile"
        data = read_modelfile_bytes(path)
        folder = Path.cwd() if path == "-" else Path(path).absolute().parent
    run_build(
        data=data,
        path=path,
        relative_dir=folder,
        name=name,
        quantize=quantize,
        models=models,
        as_json=as_json,
        insecure=insecure,
    )
