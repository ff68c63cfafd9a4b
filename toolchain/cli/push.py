"""`mfc push NAME`: send a model to the OCI registry its name points at."""

from __future__ import annotations

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.store_options import insecure_option, open_store, store_options


@click.command()
@click.argument("name")
@insecure_option
@store_options
def command(name: str, insecure: bool, models: str | None, as_json: bool) -> None:
    """Push NAME (host/namespace/model:tag, e.g. localhost:5000/team/model:v1) to its registry.

    Blobs the registry already has are skipped; blobs inherited FROM another model on the
    same registry are mounted from its repository. Credentials: MFC_REGISTRY_USERNAME and
    MFC_REGISTRY_PASSWORD, or the docker config (`docker login`).
    """
    from toolchain.registry.push import push_model

    with reporter(as_json) as progress:
        result = push_model(name, store=open_store(models), insecure=insecure, progress=progress)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"pushed {result.name.display()} ({result.digest[:12]}): {len(result.uploaded)} uploaded, "
        f"{len(result.mounted)} mounted, {len(result.existing)} already there"
    )
