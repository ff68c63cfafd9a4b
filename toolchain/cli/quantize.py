"""`mfc quantize IN.gguf [OUT.gguf] TYPE`: a GGUF file to a K-quant or legacy type, byte
for byte what llama-quantize writes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.errors import MfcError, UsageError
from toolchain.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from quant import QuantizeProgress


class QuantizeError(MfcError):
    """A quantization the user asked for cannot be done (bad file, type, imatrix, ...)."""


def default_output(src: Path, ftype: str, known: tuple[str, ...]) -> Path:
    """`model.gguf` -> `model-Q4_K_M.gguf` beside it (a trailing `-F16`-like tag is replaced)."""
    stem = src.name[: -len(".gguf")] if src.name.lower().endswith(".gguf") else src.name
    tags = "|".join(re.escape(k) for k in sorted(known, key=len, reverse=True))
    stem = re.sub(rf"[-_.](?:{tags})$", "", stem, flags=re.IGNORECASE) or stem
    return src.with_name(f"{stem}-{ftype}.gguf")


def _on_tensor(
    progress: ProgressCallback, as_json: bool, status: str
) -> Callable[[QuantizeProgress], None]:
    """One bar of bytes for people; one JSON line per tensor for CI."""

    def report(p: QuantizeProgress) -> None:
        label = f"{status}: {p.tensor} ({p.index}/{p.count})" if as_json else status
        progress(ProgressEvent(label, None, p.bytes_total, p.bytes_done))

    return report


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="IN.gguf [OUT.gguf] TYPE")
@click.option(
    "--imatrix",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Importance matrix (GGUF or legacy .dat, from llama-imatrix).",
)
@click.option("--pure", is_flag=True, help="Every tensor to TYPE: no K-quant mixture.")
@click.option(
    "--allow-requantize",
    is_flag=True,
    help="Allow re-quantizing tensors that are already quantized (loses quality).",
)
@click.option("--output-tensor-type", metavar="T", help="Tensor type for output.weight.")
@click.option("--token-embedding-type", metavar="T", help="Tensor type for token_embd.weight.")
@click.option("--leave-output-tensor", is_flag=True, help="Keep output.weight as it is.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Processes quantizing, this one included (default: all cores).",
)
@click.option("--json", "as_json", is_flag=True, help="Progress and result as JSON lines.")
def command(  # noqa: PLR0917 (one parameter per option)
    args: tuple[str, ...],
    imatrix: Path | None,
    pure: bool,
    allow_requantize: bool,
    output_tensor_type: str | None,
    token_embedding_type: str | None,
    leave_output_tensor: bool,
    threads: int | None,
    as_json: bool,
) -> None:
    """Quantize IN.gguf to TYPE (q4_K_M, q8_0, ...), writing OUT.gguf or IN-TYPE.gguf."""
    import quant
    from quant.files import not_regular
    from quant.pipeline import forked_workers

    if len(args) not in (2, 3):
        raise UsageError(
            "expected IN.gguf [OUT.gguf] TYPE", hint="e.g. mfc quantize model.gguf q4_K_M"
        )
    src, type_arg = Path(args[0]), args[-1]
    try:
        ftype = quant.file_type(type_arg)
    except quant.QuantError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    dst = Path(args[1]) if len(args) == 3 else default_output(src, ftype.name, quant.FTYPE_NAMES)
    problem = not_regular(src)
    if problem is not None:
        raise QuantizeError(f"{src}: {problem}")
    if dst.resolve() == src.resolve():
        raise QuantizeError(f"{dst} is the input file", hint="give another OUT.gguf")
    status = f"quantizing {src.name} to {ftype.name}"
    if not as_json:
        click.echo(f"{status} -> {dst}", err=True)
    try:
        # a one-shot command: its workers may be forked from it
        with reporter(as_json) as progress, forked_workers():
            result = quant.quantize_file(
                src,
                dst,
                ftype.name,
                imatrix=imatrix,
                pure=pure,
                allow_requantize=allow_requantize,
                output_tensor_type=output_tensor_type,
                token_embedding_type=token_embedding_type,
                leave_output_tensor=leave_output_tensor,
                threads=threads,
                progress=_on_tensor(progress, as_json, status),
            )
    except quant.QuantError as exc:
        if as_json:
            print_json({"error": exc.message})
        raise QuantizeError(exc.message, hint=exc.hint) from None
    summary = {
        "status": "success",
        "output": str(result.path),
        "type": result.ftype,
        "tensors": result.tensors,
        "quantized": result.quantized,
        "input_bytes": result.input_bytes,
        "output_bytes": result.output_bytes,
        "seconds": round(result.seconds, 3),
        "tensor_types": result.types,
    }
    if as_json:
        print_json(summary)
        return
    mix = ", ".join(f"{n} {t}" for t, n in sorted(result.types.items()))
    click.echo(
        f"wrote {result.path} ({result.output_bytes / 2**20:.1f} MiB, {result.ftype}: {mix}) "
        f"in {result.seconds:.1f}s"
    )
