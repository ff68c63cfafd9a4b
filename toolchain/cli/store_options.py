"""Options every store command shares: `--models DIR` and `--json`, and opening the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from toolchain.store import Store

F = TypeVar("F", bound=Callable[..., Any])

MODELS_HELP = "Store folder (default: $MFC_MODELS, then $OLLAMA_MODELS, then ~/.ollama/models)."


def models_option(f: F) -> F:
    """`--models DIR`: the store to use, overriding the environment."""
    return click.option(
        "--models", metavar="DIR", type=click.Path(file_okay=False), help=MODELS_HELP
    )(f)


def json_option(f: F) -> F:
    """`--json`: machine-readable output for CI."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (one document per line)."
    )(f)


def quantize_option(f: F) -> F:
    """`-q/--quantize TYPE`: what QUANTIZE does in a Modelfile."""
    return click.option(
        "-q", "--quantize", metavar="TYPE", help="Quantize the model layer (q4_K_M, q8_0, ...)."
    )(f)


def open_store(models: str | None) -> Store:
    return Store.open(models)


def human_size(n: int) -> str:
    """Bytes the way `ollama list` shows them (decimal units): 98 MB, 4.7 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"
