"""The emit pass: the reference's layer order and merge rules, the config blob, the manifest.

Order (store_api.md §1.8): base layers (the source model's, or the files' then the
detected template and stop words), adapters, drafts; then TEMPLATE replaces every template
layer, SYSTEM every system layer, each LICENSE is appended, PARAMETERs merge over the
existing params layers (request wins, then the first layer) into one params layer at the
end, and MESSAGEs replace the messages layer. The config is folded from the model layers.
Blobs are written only when missing; the manifest goes last, atomically.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.gojson import GoStruct, decode_any, encode
from toolchain.store import mediatypes
from toolchain.store.blobs import digest_of_bytes
from toolchain.store.config import DraftConfig, ModelConfig
from toolchain.store.errors import StoreError
from toolchain.store.manifest import Layer, Manifest


def text_layer(media_type: str, data: bytes) -> PlannedLayer:
    return PlannedLayer(media_type, digest_of_bytes(data), len(data), source=data)


def _without(layers: list[PlannedLayer], media_type: str) -> list[PlannedLayer]:
    return [layer for layer in layers if layer.media_type != media_type]


def _params_of(ctx: BuildContext, layer: PlannedLayer) -> dict[str, Any]:
    try:
        data = (
            layer.source
            if isinstance(layer.source, bytes)
            else ctx.store.blobs.read_bytes(layer.digest)
        )
        obj = decode_any(data)
    except (StoreError, ValueError) as exc:
        raise BuildError(f"cannot read inherited parameters {layer.digest}: {exc}") from None
    return obj if isinstance(obj, dict) else {}


def fold_config(plan: BuildPlan, params: dict[str, Any]) -> ModelConfig:
    """The config from the model and draft layers (first model layer wins), as `createModel`."""
    config = plan.config
    for layer in plan.base_layers():
        if layer.gguf is None:
            continue
        if layer.media_type == mediatypes.MODEL:
            config = config.with_model_layer(
                layer.gguf.architecture,
                layer.gguf.parameter_count,
                layer.gguf.get_uint32("general.file_type"),
            )
            config, stop = config.with_arch_defaults(layer.gguf.architecture)
            if stop is not None and "stop" not in params:
                params["stop"] = list(stop)
        elif layer.media_type == mediatypes.DRAFT:
            config = replace(
                config, draft=DraftConfig(model_format="gguf", architecture=layer.gguf.architecture)
            )
    return config


def plan_layers(plan: BuildPlan, ctx: BuildContext) -> tuple[list[PlannedLayer], ModelConfig]:
    """The final layers and config, before anything is written."""
    req = plan.request
    params = dict(req.parameters)
    config = fold_config(plan, params)
    layers = list(plan.base_layers())
    if req.template:
        layers = _without(layers, mediatypes.TEMPLATE)
        layers.append(text_layer(mediatypes.TEMPLATE, req.template.encode("utf-8")))
    if req.system:
        layers = _without(layers, mediatypes.SYSTEM)
        layers.append(text_layer(mediatypes.SYSTEM, req.system.encode("utf-8")))
    for text in req.licenses:
        layers.append(text_layer(mediatypes.LICENSE, text.encode("utf-8")))
    for layer in layers:
        if layer.media_type == mediatypes.PARAMS:
            for key, value in _params_of(ctx, layer).items():
                params.setdefault(key, value)
    if params:
        layers = _without(layers, mediatypes.PARAMS)
        layers.append(text_layer(mediatypes.PARAMS, encode(params)))
    if req.messages:
        layers = _without(layers, mediatypes.MESSAGES)
        messages = [GoStruct(role=role, content=content) for role, content in req.messages]
        layers.append(text_layer(mediatypes.MESSAGES, encode(messages)))
    return layers, config


def write_layer(ctx: BuildContext, layer: PlannedLayer) -> bool:
    """Make sure the layer's blob is in the store; returns whether it had to be written."""
    store = ctx.writable()
    if isinstance(layer.source, bytes):
        created = store.blobs.write_bytes(layer.source).created
    elif layer.source is not None:
        progress = ctx.byte_progress(f"copying file {layer.digest}", layer.size, layer.digest)
        try:
            created = store.blobs.import_file(layer.source, layer.digest, progress).created
        except StoreError as exc:
            raise BuildError(exc.message, layer.span) from None
        except OSError as exc:
            raise BuildError(f"cannot read {layer.source}: {exc.strerror}", layer.span) from None
    else:
        if not store.blobs.exists(layer.digest):
            raise BuildError(f"blob {layer.digest} is missing from the store", layer.span)
        store.blobs.touch(layer.digest)
        created = False
    if created:
        ctx.new_blobs.append(layer.digest)
    return created


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if plan.pending or plan.pending_adapters:
        raise BuildError("a Hugging Face folder was not converted (the convert pass did not run)")
    layers, config = plan_layers(plan, ctx)
    config_data = config.encode()
    config_layer = Layer(mediatypes.CONFIG, digest_of_bytes(config_data), len(config_data))
    manifest = Manifest(config=config_layer, layers=tuple(layer.layer() for layer in layers))
    for layer in layers:
        created = write_layer(ctx, layer)
        verb = "creating new layer" if created else "using existing layer"
        ctx.report(layer.status or f"{verb} {layer.digest}")
    write_layer(ctx, text_layer(mediatypes.CONFIG, config_data))  # no status, as in the reference
    ctx.report("writing manifest")
    ctx.writable().write_manifest(plan.name, manifest)
    return replace(plan, layers=tuple(layers), config=config, manifest=manifest)


PASS = Pass("emit", 1, run)
