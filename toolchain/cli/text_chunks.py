"""What the commands that run a model over a text file in chunks share (`mfc eval`,
`mfc imatrix`, after llama-perplexity and llama-imatrix): `--data FILE`, the chunking
options `--ctx`, `--chunks`, `--threads`, and reading the text once the files are there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from toolchain.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])


def data_option(help_text: str) -> Callable[[F], F]:
    """`--data FILE` (required): the text the model runs over."""
    return click.option(
        "--data", required=True, type=click.Path(dir_okay=False, path_type=Path), help=help_text
    )


def chunk_options(*, min_ctx: int, ctx_help: str, chunks_help: str) -> Callable[[F], F]:
    """`--ctx N` (tokens per chunk, default 512, at least `min_ctx`; the callback's
    `n_ctx`), `--chunks N` (at most that many) and `--threads N`."""
    options = (
        click.option(
            "--ctx",
            "n_ctx",
            type=click.IntRange(min=min_ctx),
            default=512,
            show_default=True,
            help=ctx_help,
        ),
        click.option("--chunks", type=click.IntRange(min=1), help=chunks_help),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all)."),
    )

    def apply(f: F) -> F:
        for option in reversed(options):  # as if written above `f` in this order
            f = option(f)
        return f

    return apply


def read_data(data: Path, inputs: tuple[Path, ...]) -> str:
    """The text in `data` (undecodable bytes replaced), once every file of `inputs` (`data`
    among them, in the command's order) is there; else a usage error naming the first not."""
    for p in inputs:
        if not p.is_file():
            raise UsageError(f"{p}: no such file")
    return data.read_text(encoding="utf-8", errors="replace")
