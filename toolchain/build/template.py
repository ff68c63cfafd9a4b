"""The template pass: explicit > inherited > detected from the GGUF's chat template.

An explicit TEMPLATE is parsed here (a Go template error is reported at the Modelfile
line). A model built from files gets, for each GGUF with a `tokenizer.chat_template`, the
named template that matches it and that template's stop words, as two layers after the
base layers, exactly where the reference puts them; an explicit TEMPLATE later replaces
the detected one, and PARAMETERs merge over the detected stop words. A model built FROM
another model inherits its template layer and is never re-detected.
"""

from __future__ import annotations

from dataclasses import replace

from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.gojson import GoStruct, encode
from toolchain.gotemplate import TemplateError
from toolchain.gotemplate import parse as parse_template
from toolchain.prompt import detect_template
from toolchain.store import mediatypes
from toolchain.store.blobs import digest_of_bytes


def check_template(text: str, plan: BuildPlan) -> None:
    """Parse an explicit TEMPLATE; a syntax error is `template error: ...` at its line."""
    try:
        parse_template(text)
    except TemplateError as exc:
        raise BuildError(f"template error: {exc}", plan.request.spans.get("template")) from None


def detected_layers(chat_template: str) -> list[PlannedLayer]:
    """The template layer, and the stop-words params layer, for a GGUF's chat template."""
    found = detect_template(chat_template)
    if found is None:
        return []
    data = found.template.replace("\r\n", "\n").encode("utf-8")
    layers = [
        PlannedLayer(
            media_type=mediatypes.TEMPLATE,
            digest=digest_of_bytes(data),
            size=len(data),
            source=data,
            status=f"using autodetected template {found.name}",
        )
    ]
    if found.parameters:  # the reference keeps only `stop` of the template's parameters
        params = encode(GoStruct(stop=list(found.stop)))
        layers.append(
            PlannedLayer(mediatypes.PARAMS, digest_of_bytes(params), len(params), source=params)
        )
    return layers


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if plan.request.template:
        check_template(plan.request.template, plan)
    if plan.from_model is not None:
        return plan
    detected: list[PlannedLayer] = []
    for layer in plan.base:
        if layer.gguf is not None and layer.gguf.chat_template:
            detected.extend(detected_layers(layer.gguf.chat_template))
    return replace(plan, detected=tuple(detected))


PASS = Pass("template", 1, run)
