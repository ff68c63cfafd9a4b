"""`mfc rm NAME...`: remove models and the blobs no other model uses."""

from __future__ import annotations

import click

from toolchain.cli.human import human_size
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options


@click.command()
@click.argument("names", nargs=-1, required=True)
@store_options
def command(names: tuple[str, ...], models: str | None, as_json: bool) -> None:
    """Remove the models NAMES. Blobs still used by another model stay; build intermediates
    only they used (the F16 a quantized model was made from) go too.

    Every name is checked first: if one is not in the store, nothing is removed.
    """
    store = open_store(models)
    resolved = [store.resolve(n) for n in names]
    for name in resolved:
        store.read_manifest(name)  # raises "model 'x' not found" before anything is removed
    deleted, freed, blobs = [], 0, []
    for name in resolved:
        sizes = {e.digest: e.size for e in store.cache.entries()}  # intermediates it frees
        sizes |= {layer.digest: layer.size for layer in store.read_manifest(name).all_layers()}
        removed = store.delete(
            name, on_wait=lambda: click.echo("waiting for the store lock", err=True)
        )
        freed += sum(sizes.get(d, 0) for d in removed)
        blobs += removed
        deleted.append(name.display())
        if not as_json:
            click.echo(f"deleted '{name.display()}'")
    if as_json:
        print_json({"deleted": deleted, "removed_blobs": blobs, "freed": freed})
    elif blobs:
        click.echo(f"removed {len(blobs)} blob(s), {human_size(freed)} freed")
