"""`mfc eval MODEL... --base BASE --data TEXT`: what quantization cost each MODEL, as
`llama-perplexity --kl-divergence` measures it (perplexity, KL divergence from BASE's
token distributions, top-token agreement), one table row per model."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.text_chunks import chunk_options, data_option, read_data
from toolchain.errors import MfcError
from toolchain.progress import ProgressEvent


class QualityGateError(MfcError):
    """A model's mean KL divergence is above --max-kld."""


def _table(rows: list[dict[str, object]]) -> str:
    head = ("MODEL", "TYPE", "SIZE", "BPW", "PPL", "KLD", "KLD P99", "TOP-1")
    lines = [head]
    for r in rows:
        lines.append(
            (
                Path(str(r["path"])).name,
                str(r["file_type"]),
                f"{int(r['size']) / 2**20:.1f} MiB",  # type: ignore[call-overload]
                f"{r['bpw']:.2f}",
                f"{r['ppl']:.4f}",
                f"{r['kld_mean']:.6f}",
                f"{r['kld_p99']:.6f}",
                f"{100 * float(r['top1']):.2f}%",  # type: ignore[arg-type]
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines
    )


@click.command()
@click.argument(
    "models",
    nargs=-1,
    required=True,
    metavar="MODEL.gguf...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--base",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The unquantized (or reference) model the others are compared with.",
)
@data_option("Text file to evaluate on (at least two contexts' worth of tokens).")
@chunk_options(
    min_ctx=8,
    ctx_help="Tokens per chunk (llama-perplexity's -c); the second half is scored.",
    chunks_help="Evaluate at most this many chunks.",
)
@click.option(
    "--max-kld",
    type=float,
    help="Exit with status 1 when a model's mean KL divergence is above this.",
)
@click.option("--json", "as_json", is_flag=True, help="Progress and results as JSON lines.")
def command(  # noqa: PLR0917 (one parameter per option)
    models: tuple[Path, ...],
    base: Path,
    data: Path,
    n_ctx: int,
    chunks: int | None,
    threads: int | None,
    max_kld: float | None,
    as_json: bool,
) -> None:
    """Perplexity and KL divergence of MODELs against BASE on the text in --data."""
    from toolchain import quality

    text = read_data(data, (base, data, *models))
    rows = []
    with reporter(as_json) as progress:

        def on_chunk(what: str, done: int, total: int) -> None:
            progress(ProgressEvent(f"evaluating {what}", None, total, done))

        try:
            ref = quality.base_log_probs(
                base, text, n_ctx, max_chunks=chunks, threads=threads, progress=on_chunk
            )
            for m in models:
                rows.append(quality.score(m, ref, threads=threads, progress=on_chunk).to_json())
        except ValueError as exc:  # llama-cpp-python: the model file could not be loaded
            raise MfcError(str(exc)) from None
    if as_json:
        print_json({"status": "success", "base": str(base), "ctx": n_ctx, "models": rows})
    else:
        click.echo(
            f"base {base.name}: PPL {ref.ppl:.4f} over {ref.tokens.shape[0]} chunks "
            f"of {n_ctx} tokens"
        )
        click.echo(_table(rows))
    if max_kld is not None:
        over = [r for r in rows if float(r["kld_mean"]) > max_kld]
        if over:
            names = ", ".join(Path(str(r["path"])).name for r in over)
            raise QualityGateError(f"mean KL divergence above --max-kld {max_kld}: {names}")
