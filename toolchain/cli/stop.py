"""`mfc stop MODEL`: unload a model from the running server now."""

from __future__ import annotations

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import json_option
from toolchain.errors import MfcError


@click.command()
@click.argument("model")
@json_option
def command(model: str, as_json: bool) -> None:
    """Unload MODEL from the running server (a generate request with keep_alive 0)."""
    from runtime.client import Client

    client = Client(timeout=60)
    try:
        loaded = client.request("GET", "/api/ps")["models"]
        wanted = {model, model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"}
        if not any(m["name"] in wanted or m["model"] in wanted for m in loaded):
            raise MfcError(
                f'couldn\'t find model "{model}" to stop', hint="`mfc ps` lists the loaded models"
            )
        client.request("POST", "/api/generate", {"model": model, "keep_alive": 0})
    finally:
        client.close()
    if as_json:
        print_json({"model": model, "status": "stopped"})
