"""`mfc list`: the models in the store, newest first (the table of `ollama list`)."""

from __future__ import annotations

import click

from toolchain.cli.human import human_size, human_time, print_table
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options


@click.command()
@store_options
def command(models: str | None, as_json: bool) -> None:
    """List the models in the store: name, ID (manifest digest), size, age."""
    from toolchain.describe import rfc3339
    from toolchain.store import load_model
    from toolchain.store.errors import StoreError

    store = open_store(models)
    entries = store.list_models()
    if as_json:
        rows = []
        for e in entries:
            try:
                details = load_model(store, e.name).details()
            except StoreError:
                details = {}
            rows.append(
                {
                    "name": e.name.display(),
                    "model": e.name.display(),
                    "modified_at": rfc3339(e.modified),
                    "size": e.size,
                    "digest": e.digest,
                    "details": details,
                }
            )
        print_json({"models": rows})
        return
    table = [("NAME", "ID", "SIZE", "MODIFIED")]
    table += [
        (e.name.display(), e.digest[:12], human_size(e.size), human_time(e.modified))
        for e in entries
    ]
    print_table(table)
