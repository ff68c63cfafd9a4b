"""The resolve pass: FROM, ADAPTER and DRAFT become planned layers with known digests.

FROM a model name: every layer of that model, in order, marked as coming from it, and the
settings its config carries (renderer, parser, requires, format, capabilities); a model
not in the store whose name has a registry host is pulled first (`toolchain.registry`).
FROM files: each GGUF (in sorted key order) is hashed and its header checked; its media
type comes from `general.type` (model, adapter, projector). ADAPTER must be a GGUF LoRA.
Hugging Face folders are left for the convert pass. Apart from a pull, nothing is written
to the store here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.build.request import SourceFile
from toolchain.errors import MfcError, Span
from toolchain.gojson import decode_any
from toolchain.store import mediatypes
from toolchain.store.blobs import digest_of_file
from toolchain.store.config import ModelConfig
from toolchain.store.errors import BlobError, InvalidNameError, ModelNotFoundError, StoreError
from toolchain.store.gguf_reader import GGUFError, GGUFInfo, read_gguf
from toolchain.store.manifest import Manifest
from toolchain.store.names import ModelName
from toolchain.store.store import Store


def read_source_gguf(ctx: BuildContext, f: SourceFile) -> GGUFInfo:
    """The header of an input GGUF, or a `BuildError` at the instruction that named it."""
    ctx.report("parsing GGUF")
    try:
        return read_gguf(f.path)
    except GGUFError as exc:
        raise BuildError(exc.message, f.span, hint=exc.hint) from None
    except OSError as exc:
        raise BuildError(f"cannot read {f.path}: {exc.strerror}", f.span) from None


def source_digest(ctx: BuildContext, f: SourceFile) -> str:
    """The file's sha256 (hashed with a progress bar unless the request already knows it)."""
    if f.digest is not None:
        return f.digest
    size = f.path.stat().st_size
    return digest_of_file(f.path, ctx.byte_progress(f"hashing {f.key}", size))


def provenance(store: Store, path: Path, media_type: str, key: str) -> str:
    """The `from` of a file layer: its key, as in the reference, except for a Modelfile
    naming a blob of this store by its path (what `mfc show --modelfile` writes): that
    layer keeps the `from` it already has in the store's manifests (first by name), so the
    output rebuilds to the same manifest."""
    digest = store.blobs.digest_at(path)
    if key != path.name or digest is None:
        return key
    for model in store.names():
        try:
            manifest = store.read_manifest(model)
        except StoreError:
            continue
        for layer in manifest.layers:
            if layer.digest == digest and layer.media_type == media_type:
                return layer.from_
    return key


def media_type_of(info: GGUFInfo) -> str:
    if info.kind == "adapter":
        return mediatypes.ADAPTER
    if info.is_projector:
        return mediatypes.PROJECTOR
    return mediatypes.MODEL


def _split_check(f: SourceFile, info: GGUFInfo) -> None:
    count = info.kv.get("split.count")
    if isinstance(count, int) and count > 1:
        raise BuildError(
            f"{f.path} is one shard of a split GGUF ({count} shards); mfc builds from one file",
            f.span,
            hint="merge the shards first: llama-gguf-split --merge first-shard.gguf merged.gguf",
        )


def file_layers(
    ctx: BuildContext, files: tuple[SourceFile, ...], media_type: str | None
) -> list[PlannedLayer]:
    out = []
    for f in sorted(files, key=lambda s: s.key):
        info = read_source_gguf(ctx, f)
        _split_check(f, info)
        mt = media_type or media_type_of(info)
        digest = source_digest(ctx, f)
        out.append(
            PlannedLayer(
                media_type=mt,
                digest=digest,
                size=info.file_size,
                source=f.path,
                from_=provenance(ctx.store, f.path, mt, f.key),
                gguf=info,
                span=f.span,
            )
        )
    return out


def _from_model(ctx: BuildContext, plan: BuildPlan) -> BuildPlan:
    req = plan.request
    span = req.spans.get("from")
    try:
        source = ctx.store.resolve(req.from_model)
    except InvalidNameError:
        raise BuildError(
            f"FROM {req.from_model!r} is neither a file nor a valid model name",
            span,
            hint="FROM takes a .gguf file, a folder holding one, or a model name in the store",
        ) from None
    try:
        manifest: Manifest = ctx.store.read_manifest(source)
    except ModelNotFoundError:
        manifest = _pull_base(ctx, source, span)
    layers = []
    for layer in manifest.layers:
        info = None
        if layer.media_type in mediatypes.GGUF_LAYERS:
            try:
                info = read_gguf(ctx.store.blobs.path(layer.digest))
            except (GGUFError, BlobError) as exc:
                raise BuildError(f"base model '{source.display()}': {exc.message}", span) from None
        layers.append(
            PlannedLayer(
                media_type=layer.media_type,
                digest=layer.digest,
                size=layer.size,
                from_=source.display(),
                name=layer.name,
                gguf=info,
            )
        )
    return replace(
        plan,
        from_model=source,
        base=tuple(layers),
        config=_inherited_config(ctx, manifest, plan.config),
    )


def _pull_base(ctx: BuildContext, source: ModelName, span: Span | None) -> Manifest:
    """Pull a FROM model that names a registry host, as the reference's create does.

    A name without a host would be pulled from ollama.com by the reference; mfc does not
    go there on its own, so that stays an unknown base model.
    """
    if source.on_default_registry:
        raise BuildError(
            f"base model '{source.display()}' not found in {ctx.store.root}, and no such file",
            span,
            hint="`mfc list` shows the models in this store; a path is relative to the "
            "Modelfile; a name with a registry host (localhost:5000/team/model:tag) is pulled",
        )
    from toolchain.registry import pull_model  # the HTTP client only when a pull is needed

    try:
        with ctx.unlocked():
            pull_model(source, store=ctx.store, insecure=ctx.insecure, progress=ctx.progress)
        return ctx.store.read_manifest(source)
    except MfcError as exc:
        raise BuildError(
            f"cannot pull base model '{source.display()}': {exc.message}", span, hint=exc.hint
        ) from None


def _inherited_config(ctx: BuildContext, manifest: Manifest, config: ModelConfig) -> ModelConfig:
    if not manifest.config.digest:
        return config
    try:
        base = ModelConfig.from_json(decode_any(ctx.store.blobs.read_bytes(manifest.config.digest)))
    except (StoreError, ValueError):
        return config
    return replace(
        config,
        renderer=config.renderer or base.renderer,
        parser=config.parser or base.parser,
        requires=config.requires or base.requires,
        model_format=config.model_format or base.model_format,
        capabilities=config.capabilities or base.capabilities,
    )


def _where(layer: PlannedLayer) -> str:
    return str(layer.source) if isinstance(layer.source, Path) else layer.digest


def _check_adapters(layers: list[PlannedLayer], base: tuple[PlannedLayer, ...]) -> None:
    if len(layers) > 1:
        raise BuildError("only one adapter is currently supported", layers[1].span)
    arch = next(
        (b.gguf.architecture for b in base if b.media_type == mediatypes.MODEL and b.gguf), None
    )
    for layer in layers:
        assert layer.gguf is not None
        if not layer.gguf.is_lora_adapter:
            kind = layer.gguf.kind
            found = (
                f"general.type is {kind!r}"
                if kind != "adapter"
                else (f"adapter.type is {layer.gguf.get_str('adapter.type', 'missing')!r}")
            )
            raise BuildError(
                f"{_where(layer)} is not a LoRA adapter ({found})",
                layer.span,
                hint="ADAPTER takes a GGUF LoRA (general.type = adapter, adapter.type = lora), "
                "e.g. from convert_lora_to_gguf.py; a full model goes in FROM",
            )
        if arch is not None and layer.gguf.architecture != arch:
            raise BuildError(
                f"adapter {_where(layer)} is for architecture {layer.gguf.architecture!r}, "
                f"but the model is {arch!r}",
                layer.span,
            )


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    req = plan.request
    config = replace(plan.config, renderer=req.renderer, parser=req.parser, requires=req.requires)
    plan = replace(plan, config=config)
    if req.from_model:
        plan = _from_model(ctx, plan)
    elif req.files or req.convert_dirs:
        plan = replace(
            plan, base=tuple(file_layers(ctx, req.files, None)), pending=req.convert_dirs
        )
    else:
        raise BuildError("neither 'from' or 'files' was specified", hint="add a FROM line")
    drafts = file_layers(ctx, req.draft_files, mediatypes.DRAFT)
    adapters = file_layers(ctx, req.adapters, None)
    _check_adapters(adapters, plan.base)
    return replace(
        plan, adapters=tuple(adapters), drafts=tuple(drafts), pending_adapters=req.adapter_dirs
    )


PASS = Pass("resolve", 1, run)
