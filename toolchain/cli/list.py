"""`mfc list`: the models in the store, newest first (the table of `ollama list`)."""

from __future__ import annotations

import time

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import human_size, open_store, store_options


def ago(seconds: float) -> str:
    """A coarse age: `About a minute ago`, `3 hours ago`, `2 days ago`."""
    s = max(time.time() - seconds, 0)
    for unit, size in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        n = int(s // size)
        if n >= 2:
            return f"{n} {unit}s ago"
        if n == 1:
            return f"About a{'n' if unit == 'hour' else ''} {unit} ago"
    return "Less than a minute ago"


@click.command()
@store_options
def command(models: str | None, as_json: bool) -> None:
    """List the models in the store: name, ID (manifest digest), size, age."""
    from toolchain.store import load_model
    from toolchain.store.errors import StoreError
    from toolchain.store.show import rfc3339

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
        (e.name.display(), e.digest[:12], human_size(e.size), ago(e.modified)) for e in entries
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        click.echo(
            "    ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "    "
            + row[3]
        )
