"""What every store command shares: `--models DIR`, `--json`, `--insecure`, opening the store.

One definition of each option, so `mfc build`, `create`, `list`, `show`, `cp`, `rm`,
`inspect`, `push`, `pull`, `export` and `import` spell, document and behave the same:
`store_options` gives a command `--models` and `--json`, and with `--json` a user error
also ends stdout with `{"error": ...}` (as the server's streams end), so CI reading stdout
learns why a command failed without parsing stderr.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

from toolchain.cli.reporting import print_json
from toolchain.errors import MfcError
from toolchain.store import Store

F = TypeVar("F", bound=Callable[..., Any])

MODELS_HELP = "Store folder (default: $MFC_MODELS, then $OLLAMA_MODELS, then ~/.ollama/models)."
JSON_HELP = "Print JSON (one document per line)."
INSECURE_HELP = "Allow a registry over plain http or with an untrusted TLS certificate."


def models_option(f: F) -> F:
    """`--models DIR`: the store to use, overriding the environment."""
    return click.option(
        "--models", metavar="DIR", type=click.Path(file_okay=False), help=MODELS_HELP
    )(f)


def json_option(f: F) -> F:
    """`--json`: machine-readable output for CI."""
    return click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(f)


def insecure_option(f: F) -> F:
    """`--insecure`: plain http and unverified TLS for the registry a name points at."""
    return click.option("--insecure", is_flag=True, help=INSECURE_HELP)(f)


def quantize_option(f: F) -> F:
    """`-q/--quantize TYPE`: what QUANTIZE does in a Modelfile."""
    return click.option(
        "-q", "--quantize", metavar="TYPE", help="Quantize the model layer (q4_K_M, q8_0, ...)."
    )(f)


def store_options(f: F) -> F:
    """`--models DIR` and `--json` for a command over the store (the callback takes
    `models` and `as_json`); with `--json`, an `MfcError` also prints `{"error": message}`
    on stdout before the CLI turns it into a diagnostic and exit code."""

    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except MfcError as exc:
            if kwargs.get("as_json"):
                print_json({"error": exc.message})
            raise

    return models_option(json_option(cast(F, run)))


def open_store(models: str | None) -> Store:
    return Store.open(models)
