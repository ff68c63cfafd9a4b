"""The quantize pass (`QUANTIZE` / `--quantize`): model layers to a K-quant or legacy type.

Cached by (input blob digest, target type): a rebuild with the same input and type reuses
the output blob and does no tensor work. The output is a new layer that, like the
reference's, no longer carries the input file's `from`. The kernels are `quant/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass, pass_output
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.errors import MfcError, Span
from toolchain.frontend.parameters import QUANTIZE_TYPES, canonical_quantize_type
from toolchain.store import mediatypes
from toolchain.store.config import file_type_name
from toolchain.store.gguf_reader import read_gguf

VERSION = 1
#: what the progress events carry as digest, like the reference (19 zeros)
NO_DIGEST = "0" * 19
FLOAT_SOURCES = ("F32", "F16", "BF16")


def check_quantize_type(name: str, span: Span | None) -> str:
    """The canonical upper-case type (`Q4_K_M`) for a QUANTIZE/--quantize value, or an error."""
    found = canonical_quantize_type(name)
    if found is None:
        raise BuildError(
            f"unsupported quantization type '{name}'",
            span,
            hint="known types: " + ", ".join(QUANTIZE_TYPES),
        )
    return found.upper()


def _source_type(layer: PlannedLayer) -> str:
    assert layer.gguf is not None
    ft = layer.gguf.get_uint32("general.file_type", -1)
    if ft == 0:
        return "F32"  # the reference reads 0 as "unknown" and refuses; it is plain F32
    name = file_type_name(ft) if ft >= 0 else "unknown"
    if name == "unknown" and all(t.type_name in FLOAT_SOURCES for t in layer.gguf.tensors):
        return "F32"
    return name


def run_quantizer(src: Path, dst: Path, target: str, progress: Callable[[float], None]) -> None:
    """Quantize the GGUF `src` to `dst` with `quant.quantize_file` (progress: fraction 0..1)."""
    import quant  # the kernels load here, not with every build

    def on_tensor(p: quant.QuantizeProgress) -> None:  # after each tensor
        progress(p.bytes_done / p.bytes_total if p.bytes_total else 1.0)

    try:
        quant.quantize_file(src, dst, target, progress=on_tensor)
    except quant.QuantError as exc:
        where = f" (tensor {exc.tensor})" if exc.tensor and exc.tensor not in exc.message else ""
        raise BuildError(f"{exc.message}{where}", hint=exc.hint) from None


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
    status = f"quantizing {source_type} model to {target}"

    def on_progress(fraction: float) -> None:
        done = int(layer.size * min(max(fraction, 0.0), 1.0))
        ctx.report(status, NO_DIGEST, layer.size, done)

    def produce(out: Path) -> None:
        src = layer.source if isinstance(layer.source, Path) else ctx.store.blobs.path(layer.digest)
        run_quantizer(src, out, target, on_progress)
        ctx.report("verifying conversion")
        read_gguf(out)

    try:
        return pass_output(
            ctx,
            PASS,
            layer.digest,
            {"type": target},
            produce,
            media_type=layer.media_type,
            meta={"type": target, "input": layer.digest},
            span=layer.span,
        )
    except MfcError as exc:
        raise BuildError(exc.message, span or layer.span, hint=exc.hint) from None


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if not plan.request.quantize:
        return plan
    target = check_quantize_type(plan.request.quantize, plan.request.spans.get("quantize"))
    base = tuple(
        quantize_layer(ctx, plan, layer, target)
        if layer.media_type == mediatypes.MODEL and layer.gguf is not None
        else layer
        for layer in plan.base
    )
    return replace(plan, base=base)


PASS = Pass("quantize", VERSION, run)
