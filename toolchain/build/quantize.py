"""The quantize pass (`QUANTIZE` / `--quantize`): model layers to a K-quant, legacy or
i-quant type, with the importance matrix `IMATRIX` names.

Cached by (input blob digest, target type, imatrix digest): a rebuild with the same input,
type and imatrix reuses the output blob and does no tensor work. The output is a new layer
that, like the reference's, no longer carries the input file's `from`. The kernels are
`quant/`. An IMATRIX that is calibration text rather than an imatrix file is first turned
into one by the `imatrix` pass (`mfc imatrix`'s defaults), cached by (input layer, text
digest), so the build stays reproducible and a rebuild computes nothing. A float type
(F32, F16, BF16) on a folder never gets here: the convert pass writes the folder at that
type (one rounding, see `toolchain.build.convert.model_outtype`) and this pass, seeing the
source already of the target type, keeps the layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from quant.filetypes import IMATRIX_REQUIRED
from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass, pass_output
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.build.request import CreateRequest, SourceFile
from toolchain.errors import MfcError
from toolchain.store import mediatypes
from toolchain.store.config import file_type_name
from toolchain.store.gguf_reader import read_gguf

VERSION = 1
IMATRIX_VERSION = 1
#: tokens per chunk of an IMATRIX computed from calibration text (`mfc imatrix --ctx`)
IMATRIX_CTX = 512
#: what the progress events carry as digest, like the reference (19 zeros)
NO_DIGEST = "0" * 19
FLOAT_SOURCES = ("F32", "F16", "BF16")


def check_imatrix(request: CreateRequest) -> None:
    """A type llama-quantize only makes with an importance matrix comes with IMATRIX."""
    if request.quantize in IMATRIX_REQUIRED and request.imatrix is None:
        raise BuildError(
            f"quantization type {request.quantize} needs an importance matrix",
            request.spans.get("quantize"),
            hint="add IMATRIX <file> to the Modelfile (or --imatrix FILE): an imatrix GGUF "
            "or .dat, or calibration text to compute one from",
        )


def _source_type(layer: PlannedLayer) -> str:
    assert layer.gguf is not None
    ft = layer.gguf.get_uint32("general.file_type", -1)
    if ft == 0:
        return "F32"  # the reference reads 0 as "unknown" and refuses; it is plain F32
    name = file_type_name(ft) if ft >= 0 else "unknown"
    if name == "unknown" and all(t.type_name in FLOAT_SOURCES for t in layer.gguf.tensors):
        return "F32"
    return name


def run_quantizer(
    src: Path,
    dst: Path,
    target: str,
    progress: Callable[[float], None],
    imatrix: Path | None = None,
) -> None:
    """Quantize the GGUF `src` to `dst` with `quant.quantize_file` (progress: fraction 0..1)."""
    import quant  # the kernels load here, not with every build

    def on_tensor(p: quant.QuantizeProgress) -> None:  # after each tensor
        progress(p.bytes_done / p.bytes_total if p.bytes_total else 1.0)

    try:
        quant.quantize_file(src, dst, target, imatrix=imatrix, progress=on_tensor)
    except quant.QuantError as exc:
        where = f" (tensor {exc.tensor})" if exc.tensor and exc.tensor not in exc.message else ""
        raise BuildError(f"{exc.message}{where}", hint=exc.hint) from None


def is_imatrix_file(path: Path) -> bool:
    """An imatrix GGUF or llama.cpp's legacy `.dat`, as opposed to calibration text."""
    with path.open("rb") as f:
        return f.read(4) == b"GGUF" or path.suffix.lower() == ".dat"


def _layer_path(ctx: BuildContext, layer: PlannedLayer) -> Path:
    return layer.source if isinstance(layer.source, Path) else ctx.store.blobs.path(layer.digest)


def imatrix_for(ctx: BuildContext, layer: PlannedLayer, source: SourceFile) -> tuple[Path, str]:
    """The importance matrix IMATRIX names for `layer` and its digest: the file itself, or
    the one computed from calibration text (the `imatrix` pass, cached)."""
    from toolchain.store.blobs import digest_of_file

    if is_imatrix_file(source.path):
        return source.path, digest_of_file(source.path)
    data = source.path.read_bytes()
    text_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status = f"computing the importance matrix from {source.key}"

    def produce(out: Path) -> None:
        import numpy as np

        from quant.imatrix import write_imatrix_gguf
        from toolchain.calibrate import compute_imatrix
        from toolchain.quality import EvalError

        try:
            stats = compute_imatrix(
                _layer_path(ctx, layer),
                data.decode("utf-8", errors="replace"),
                IMATRIX_CTX,
                progress=lambda done, total: ctx.report(status, NO_DIGEST, total, done),
            )
        except EvalError as exc:
            raise BuildError(f"IMATRIX {source.key}: {exc}", source.span) from None
        counts = {k: np.array([c], np.float32) for k, c in stats.counts.items()}
        write_imatrix_gguf(
            out,
            stats.sums,
            counts,
            datasets=[source.key],
            chunk_count=stats.chunks,
            chunk_size=stats.chunk_size,
        )

    ctx.report(status)
    made = pass_output(
        ctx,
        IMATRIX_PASS,
        layer.digest,
        {"text": text_digest, "ctx": IMATRIX_CTX},
        produce,
        media_type="application/vnd.mfc.imatrix",
        meta={"text": source.key},
        span=source.span,
    )
    return ctx.store.blobs.path(made.digest), made.digest


def quantize_layer(
    ctx: BuildContext, plan: BuildPlan, layer: PlannedLayer, target: str
) -> PlannedLayer:
    span = plan.request.spans.get("quantize")
    source_type = _source_type(layer)
    if source_type == target:
        return layer
    if source_type not in FLOAT_SOURCES:
        raise BuildError(
            f"quantization is only supported for F16, BF16 and F32 models, not {source_type}",
            span,
            hint="`mfc quantize --allow-requantize` re-quantizes an already quantized GGUF",
        )
    imatrix: Path | None = None
    options: dict[str, str] = {"type": target}
    if plan.request.imatrix is not None:
        imatrix, options["imatrix"] = imatrix_for(ctx, layer, plan.request.imatrix)
    status = f"quantizing {source_type} model to {target}"

    def on_progress(fraction: float) -> None:
        done = int(layer.size * min(max(fraction, 0.0), 1.0))
        ctx.report(status, NO_DIGEST, layer.size, done)

    def produce(out: Path) -> None:
        run_quantizer(_layer_path(ctx, layer), out, target, on_progress, imatrix)
        ctx.report("verifying conversion")
        read_gguf(out)

    try:
        return pass_output(
            ctx,
            PASS,
            layer.digest,
            options,
            produce,
            media_type=layer.media_type,
            meta={**options, "input": layer.digest},
            span=layer.span,
        )
    except MfcError as exc:
        raise BuildError(exc.message, span or layer.span, hint=exc.hint) from None


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if not plan.request.quantize:
        return plan
    base = tuple(
        quantize_layer(ctx, plan, layer, plan.request.quantize)  # checked by the request
        if layer.media_type == mediatypes.MODEL and layer.gguf is not None
        else layer
        for layer in plan.base
    )
    return replace(plan, base=base)


PASS = Pass("quantize", VERSION, run)
#: not a step of the pipeline: the quantize pass runs it when IMATRIX is calibration text
IMATRIX_PASS = Pass("imatrix", IMATRIX_VERSION, lambda plan, _ctx: plan)
