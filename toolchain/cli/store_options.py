"""What every store command shares: `--models DIR`, `--json`, `--insecure`, opening the store.

One definition of each option, so `mfc build`, `create`, `list`, `show`, `cp`, `rm`,
`inspect`, `push`, `pull`, `export` and `import` spell, document and behave the same:
`store_options` gives a command `--models` and `--json`, and with `--json` a user error
also ends stdout with `{"error": ...}` (as the server's streams end), so CI reading stdout
learns why a command failed without parsing stderr.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
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


def human_size(n: int) -> str:
    """Bytes the way `ollama list` shows them (decimal units): 98 MB, 4.7 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """A duration the way the reference's tables show it (Ollama's `format` package, after
    docker's go-units): `5 seconds`, `About a minute`, `3 hours`, `2 weeks`."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    minutes = whole // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round, for positive values
    if hours == 1:
        return "About an hour"
    for limit, unit, size in ((48, "hours", 1), (24 * 7 * 2, "days", 24),
                              (24 * 30 * 2, "weeks", 24 * 7), (24 * 365 * 2, "months", 24 * 30)):
        if hours < limit:
            return f"{hours // size} {unit}"
    return f"{whole // 3600 // 24 // 365} years"


def human_time(at: float, now: float | None = None) -> str:
    """A moment relative to now (Unix seconds): `3 hours ago`, `4 minutes from now`, or
    `Forever` past 20 years ahead (a keep-alive that never ends)."""
    delta = (time.time() if now is None else now) - at
    if int(int(delta / 3600) / (24 * 365)) < -20:  # Go: int(delta.Hours())/24/365
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as the reference's CLI tables print them: left-aligned columns, 4 spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("    ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
