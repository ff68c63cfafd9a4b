"""What `mfc show`, `/api/show` and the runtime report about a stored model (store_api.md §3.8).

`show_response(model)` is the reference's ShowResponse as a dict: license, modelfile,
parameters, template, system, details, messages, model_info, tensors, capabilities,
modified_at. The pieces are public for the CLI's single-field flags. This sits above the
store (`toolchain.store` reads layers; describing them needs the front end's Modelfile
rendering and the template engine), so the store imports nothing above it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from toolchain.frontend.show import go_value_text, show_commands, show_modelfile
from toolchain.gotemplate import TemplateError, parse
from toolchain.gotemplate.gofmt import quote as go_quote
from toolchain.prompt import DEFAULT_TEMPLATE, template_vars
from toolchain.store.gguf_reader import GGUFArray, GGUFInfo, read_gguf
from toolchain.store.model import StoredModel

#: arrays longer than this are shown as [] in model_info unless verbose
MODEL_INFO_ARRAY_MAX = 5
#: keys the reference leaves out of model_info
_HIDDEN_KEYS = ("general.name", "tokenizer.chat_template")


def template_identifiers(source: str) -> set[str]:
    """The field names a Go template uses, lower-cased (the reference's `Template.Vars`)."""
    try:
        return set(template_vars(parse(source)))
    except TemplateError:
        return set(re.findall(r"\.([A-Za-z_]\w*)", source.lower()))


def capabilities(model: StoredModel, gguf: GGUFInfo | None = None) -> list[str]:
    """What the model can do, derived the way the reference does from GGUF and template."""
    caps = list(model.config.capabilities)
    info = gguf if gguf is not None else model.gguf()
    if info is not None:
        caps.append("embedding" if info.arch_key("pooling_type") in info.kv else "completion")
        if model.projector_paths or info.arch_key("vision.block_count") in info.kv:
            caps.append("vision")
        if info.arch_key("audio.block_count") in info.kv:
            caps.append("audio")
    names = template_identifiers(model.template or "")
    if "tools" in names:
        caps.append("tools")
    if "suffix" in names:
        caps.append("insert")
    if "think" in names or "thinking" in names:
        caps.append("thinking")
    return list(dict.fromkeys(caps))


def modelfile_text(model: StoredModel) -> str:
    """`show --modelfile`: a Modelfile that rebuilds this model from its blobs.

    Unlike the reference, a model without a template layer gets no TEMPLATE line (the
    reference prints the default `{{ .Prompt }}`, which would add a layer on rebuild).
    Parameters are written in sorted key order (the reference uses Go's random map order).
    """
    commands = show_commands(
        str(model.model_path or ""),
        adapter_paths=[str(p) for p in model.adapter_paths],
        draft_path=str(model.draft_path or ""),
        projector_paths=[str(p) for p in model.projector_paths],
        template=model.template,
        system=model.system,
        renderer=model.config.renderer,
        parser=model.config.parser,
        options=dict(sorted(model.parameters.items())),
        licenses=model.licenses,
        messages=[(str(m.get("role", "")), str(m.get("content", ""))) for m in model.messages],
    )
    if model.template is None:
        commands = [c for c in commands if c[0] != "template"]
    return show_modelfile(model.name.display(), commands)


def go_sharp_v(value: object) -> str:
    """A parameter value as Go's `%#v` prints it (strings quoted, numbers as `%v`)."""
    if isinstance(value, str):
        return go_quote(value)
    return go_value_text(value)


def parameters_text(parameters: dict[str, Any]) -> str:
    """The `parameters` field: `%-30s %#v` per value (per element of a list), joined by newlines."""
    lines = []
    for key, value in sorted(parameters.items()):
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {go_sharp_v(item)}")
    return "\n".join(lines)


def _json_value(value: Any, verbose: bool) -> Any:
    if isinstance(value, GGUFArray):
        if value.length > MODEL_INFO_ARRAY_MAX and not verbose:
            return []
        return [_json_value(v, verbose) for v in value.items]
    return value


def model_info(info: GGUFInfo, *, verbose: bool = False) -> dict[str, Any]:
    """The GGUF metadata as `/api/show` reports it (long arrays emptied unless verbose)."""
    out = {k: _json_value(v, verbose) for k, v in info.kv.items() if k not in _HIDDEN_KEYS}
    out["general.parameter_count"] = info.parameter_count
    return dict(sorted(out.items()))


def rfc3339(timestamp: float) -> str:
    """Local time with its offset and nanoseconds, as Go's RFC3339Nano (trailing zeros cut)."""
    t = dt.datetime.fromtimestamp(timestamp).astimezone()
    frac = f"{t.microsecond:06d}".rstrip("0")
    offset = t.strftime("%z")
    offset = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + offset


def show_response(model: StoredModel, *, verbose: bool = False) -> dict[str, Any]:
    """The reference's ShowResponse for a stored model (empty fields left out)."""
    info = read_gguf(model.model_path, full_arrays=verbose) if model.model_path else None
    out: dict[str, Any] = {}
    if model.licenses:
        out["license"] = "\n".join(model.licenses)
    out["modelfile"] = modelfile_text(model)
    if model.parameters:
        out["parameters"] = parameters_text(model.parameters)
    out["template"] = model.template if model.template is not None else DEFAULT_TEMPLATE
    if model.system:
        out["system"] = model.system
    out["details"] = model.details(info)
    if model.messages:
        out["messages"] = [
            {"role": m.get("role"), "content": m.get("content")} for m in model.messages
        ]
    out["model_info"] = model_info(info, verbose=verbose) if info is not None else {}
    if model.projector_paths:  # the reference reports the first projector's metadata
        projector = read_gguf(model.projector_paths[0], full_arrays=verbose)
        out["projector_info"] = model_info(projector, verbose=verbose)
    if info is not None:
        out["tensors"] = [
            {"name": t.name, "type": t.type_name, "shape": list(t.ne)} for t in info.tensors
        ]
    out["capabilities"] = capabilities(model, info)
    out["modified_at"] = rfc3339(model.modified)
    if model.config.requires:
        out["requires"] = model.config.requires
    return out
