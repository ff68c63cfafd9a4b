"""`mfc pull NAME`: fetch a model from an OCI registry into the store."""

from __future__ import annotations

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.store_options import insecure_option, open_store, store_options


@click.command()
@click.argument("name")
@insecure_option
@store_options
def command(name: str, insecure: bool, models: str | None, as_json: bool) -> None:
    """Pull NAME (host/namespace/model:tag) from its registry into the store.

    Every blob is checked against its digest; an interrupted pull resumes where it stopped
    when run again. Credentials: MFC_REGISTRY_USERNAME and MFC_REGISTRY_PASSWORD, or the
    docker config (`docker login`).
    """
    from toolchain.registry.pull import pull_model

    with reporter(as_json) as progress:
        result = pull_model(name, store=open_store(models), insecure=insecure, progress=progress)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"pulled {result.name.display()} ({result.digest[:12]}): "
        f"{len(result.downloaded)} downloaded, {len(result.cached)} already in the store"
    )
