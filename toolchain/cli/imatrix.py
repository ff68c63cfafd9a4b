"""`mfc imatrix MODEL.gguf --data TEXT -o imatrix.gguf`: an importance matrix for
`mfc quantize --imatrix`, measured as llama-imatrix measures it."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.text_chunks import chunk_options, data_option, read_data
from toolchain.progress import ProgressEvent


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path), metavar="MODEL.gguf")
@data_option("Calibration text (at least two contexts' worth of tokens).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("imatrix.gguf"),
    show_default=True,
    help="Where to write it.",
)
@chunk_options(
    min_ctx=16,
    ctx_help="Tokens per chunk (llama-imatrix's -c).",
    chunks_help="Use at most this many chunks.",
)
@click.option("--json", "as_json", is_flag=True, help="Progress and result as JSON lines.")
def command(  # noqa: PLR0917 (one parameter per option)
    model: Path,
    data: Path,
    output: Path,
    n_ctx: int,
    chunks: int | None,
    threads: int | None,
    as_json: bool,
) -> None:
    """Compute an importance matrix of MODEL on the text in --data."""
    from quant.imatrix import write_imatrix_gguf
    from toolchain.calibrate import compute_imatrix

    text = read_data(data, (model, data))
    status = f"computing the importance matrix of {model.name}"
    with reporter(as_json) as progress:
        stats = compute_imatrix(
            model,
            text,
            n_ctx,
            max_chunks=chunks,
            threads=threads,
            progress=lambda done, total: progress(ProgressEvent(status, None, total, done)),
        )
    tmp = output.with_name(f".{output.name}.tmp")
    write_imatrix_gguf(
        tmp,
        stats.sums,
        {k: np.array([c], np.float32) for k, c in stats.counts.items()},
        datasets=[str(data)],
        chunk_count=stats.chunks,
        chunk_size=stats.chunk_size,
    )
    tmp.replace(output)
    summary = {
        "status": "success",
        "output": str(output),
        "entries": len(stats.sums),
        "chunks": stats.chunks,
        "chunk_size": stats.chunk_size,
    }
    if as_json:
        print_json(summary)
    else:
        click.echo(
            f"wrote {output} ({len(stats.sums)} entries, {stats.chunks} chunks of "
            f"{stats.chunk_size} tokens)"
        )
