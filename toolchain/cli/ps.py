"""`mfc ps`: the models a running server has loaded (the table of `ollama ps`)."""

from __future__ import annotations

import datetime as dt

import click

from toolchain.cli.human import human_size, human_time, print_table
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import json_option


def until(expires_at: str) -> str:
    """`4 minutes from now`, `Forever`, or `Stopping...` once an RFC 3339 expiry has passed."""
    try:
        when = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return expires_at
    if when <= dt.datetime.now(dt.UTC):
        return "Stopping..."
    return human_time(when.timestamp())


@click.command()
@json_option
def command(as_json: bool) -> None:
    """List the models loaded in the running server: name, ID, size, context, expiry."""
    from runtime.client import Client

    client = Client(timeout=30)
    try:
        models = client.request("GET", "/api/ps")["models"]
    finally:
        client.close()
    if as_json:
        print_json({"models": models})
        return
    rows = [("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")]
    for m in models:
        rows.append(
            (
                m["name"],
                m["digest"][:12],
                human_size(int(m["size"])),
                "100% CPU",
                str(m.get("context_length", "")),
                until(m["expires_at"]),
            )
        )
    print_table(rows)
