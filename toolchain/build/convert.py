"""The convert pass: a Hugging Face folder (FROM ./dir, ADAPTER ./lora-dir) becomes a GGUF.

Cached by the folder's content digest (every file's path and sha256) and the output type,
so a rebuild of an unchanged folder does no tensor work. The converter is
`toolchain.convert`; the output is a GGUF model layer of the type `model_outtype` picks
from the build's QUANTIZE (without one, what the reference's converter writes: F16, with
the checkpoint's BF16 matrices kept BF16), or a LoRA adapter layer (F16) for the model's
base; template detection then runs on it as for a GGUF given directly.
Like the reference's converted layers, it carries no `from`. A vision checkpoint (see
`toolchain.convert.mmproj`) gives a second layer after the model: its projector GGUF
(`application/vnd.ollama.image.projector`), as a Modelfile's second FROM of an mmproj would.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass, pass_output
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.build.request import SourceDir
from toolchain.convert import ConvertError, convert_hf_dir, convert_lora
from toolchain.convert.mmproj import convert_projector, has_projector
from toolchain.progress import ProgressEvent
from toolchain.store import mediatypes
from toolchain.store.blobs import digest_of_file

VERSION = 1
#: what adapters and projectors convert to
OUTTYPE = "f16"
#: what a model folder converts to without QUANTIZE (and before a quantization): Ollama's
#: converter's file, F16 but for the matrices the checkpoint stores as BF16, which stay
#: BF16 (see `toolchain.convert.outtype.tensor_type`); its file type says F16
REFERENCE_OUTTYPE = "ollama"
#: QUANTIZE's float types (the request's spelling) and the converter's names for them
FLOAT_OUTTYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


def folder_digest(folder: Path) -> str:
    """sha256 over the sorted (relative path, file sha256) of every file in the folder."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue  # .git, .cache ...: not part of the model
        h.update(f"{rel}\0{digest_of_file(path)}\n".encode())
    return "sha256:" + h.hexdigest()


def model_outtype(quantize: str) -> str:
    """The type the convert pass writes a model folder as, for the build's QUANTIZE.

    A float type (F32, F16, BF16) is written straight away: one rounding from the
    checkpoint, so the layer holds what `mfc convert --outtype <type>` (and llama.cpp's
    converter) write. The reference's create instead converts to F16 and then runs
    llama-quantize to the float target (store_api.md 2.4 and 2.7), rounding an F32
    checkpoint twice: its BF16 lands one BF16 step off on 1 weight in 16 (the F16 value
    sits on a BF16 tie in 1 case in 8, and ties to even the wrong way half the time).

    Without QUANTIZE, and before any other type, the folder becomes what the reference's
    create converts it to (store_api.md 2.4: "one F16/BF16 GGUF"): `REFERENCE_OUTTYPE`,
    F16 with the checkpoint's BF16 matrices kept BF16, tensor by tensor as Ollama's
    converter decides; the quantize pass then quantizes that file as the reference does.
    """
    return FLOAT_OUTTYPES.get(quantize) or REFERENCE_OUTTYPE


def _base_path(ctx: BuildContext, base: PlannedLayer | None) -> Path:
    if base is None:
        raise BuildError("a Hugging Face LoRA adapter needs a base model (FROM) to convert against")
    if isinstance(base.source, Path):
        return base.source
    return ctx.store.blobs.path(base.digest)


def convert_folder(
    ctx: BuildContext,
    source: SourceDir,
    *,
    adapter: bool,
    base: PlannedLayer | None,
    digest: str | None = None,
    quantize: str = "",
) -> PlannedLayer:
    """The folder's model layer (converted for the build's `quantize`, see `model_outtype`)
    or, with `adapter`, its LoRA layer for the model layer `base`."""
    outtype = OUTTYPE if adapter else model_outtype(quantize)
    options: dict[str, object] = {"outtype": outtype, "adapter": adapter}
    if adapter:
        options["base"] = base.digest if base is not None else ""

    def forward(event: ProgressEvent) -> None:
        if not event.status.startswith("wrote "):
            ctx.progress(event)

    def produce(out: Path) -> None:  # only on a cache miss
        ctx.report("converting adapter" if adapter else "converting model")
        if adapter:
            convert_lora(source.path, out, _base_path(ctx, base), outtype, progress=forward)
        else:
            convert_hf_dir(source.path, out, outtype, progress=forward)

    media_type = mediatypes.ADAPTER if adapter else mediatypes.MODEL
    try:
        return pass_output(
            ctx,
            PASS,
            digest or folder_digest(source.path),
            options,
            produce,
            media_type=media_type,
            meta={"folder": str(source.path)},
            span=source.span,
        )
    except ConvertError as exc:
        raise BuildError(exc.message, source.span, hint=exc.hint) from None


def convert_projector_of(ctx: BuildContext, source: SourceDir, digest: str) -> PlannedLayer:
    """The projector layer of a vision checkpoint (cached like the model's)."""

    def forward(event: ProgressEvent) -> None:
        if not event.status.startswith("wrote "):
            ctx.progress(event)

    def produce(out: Path) -> None:  # only on a cache miss
        ctx.report("converting projector")
        convert_projector(source.path, out, OUTTYPE, progress=forward)

    try:
        return pass_output(
            ctx,
            PASS,
            digest,
            {"outtype": OUTTYPE, "projector": True},
            produce,
            media_type=mediatypes.PROJECTOR,
            meta={"folder": str(source.path)},
            span=source.span,
        )
    except ConvertError as exc:
        raise BuildError(exc.message, source.span, hint=exc.hint) from None


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if not plan.pending and not plan.pending_adapters:
        return plan
    base = list(plan.base)
    for source in plan.pending:
        digest = folder_digest(source.path)
        base.append(
            convert_folder(
                ctx, source, adapter=False, base=None, digest=digest, quantize=plan.request.quantize
            )
        )
        if has_projector(source.path):
            base.append(convert_projector_of(ctx, source, digest))
    model = next((b for b in base if b.media_type == mediatypes.MODEL), None)
    adapters = list(plan.adapters)
    for source in plan.pending_adapters:
        adapters.append(convert_folder(ctx, source, adapter=True, base=model))
    return replace(
        plan, base=tuple(base), adapters=tuple(adapters), pending=(), pending_adapters=()
    )


PASS = Pass("convert", VERSION, run)
