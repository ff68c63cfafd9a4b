"""`mfc ps`: the models a running server has loaded (the table of `ollama ps`)."""

from __future__ import annotations

import datetime as dt

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import human_size, json_option


def until(expires_at: str) -> str:
    """`4 minutes from now`, `Forever`, `Stopping...` for an RFC 3339 expiry."""
    try:
        when = dt.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return expires_at
    seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds > 100 * 365 * 86400:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n = int(seconds // size)
        if n >= 2:
            return f"{n} {unit}s from now"
        if n == 1:
            return f"About a{'n' if unit == 'hour' else ''} {unit} from now"
    return "Less than a minute from now"


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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("    ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
