"""`mfc show NAME`: what a model is (summary), or one of its parts (--modelfile, --template ...)."""

from __future__ import annotations

from typing import Any

import click

from toolchain.cli.human import human_size
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options
from toolchain.store.config import human_number

PARTS = ("modelfile", "parameters", "template", "system", "license")


def _table(title: str, rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in rows), default=0) + 4
    return [f"  {title}", *(f"    {k:<{width}}{v}" for k, v in rows), ""]


def _text(title: str, texts: list[str]) -> list[str]:
    lines = [line for text in texts for line in text.splitlines() or [""]]
    return [f"  {title}", *(f"    {line}" for line in lines), ""]


def summary(response: dict[str, Any], layers: list[tuple[str, str, int, str]]) -> str:
    info = response.get("model_info", {})
    details = response["details"]
    arch = details.get("family") or info.get("general.architecture", "")
    model_rows = [
        ("architecture", str(arch)),
        ("parameters", str(details.get("parameter_size", ""))),
    ]
    for key, label in (
        ("context_length", "context length"),
        ("embedding_length", "embedding length"),
    ):
        if f"{arch}.{key}" in info:
            model_rows.append((label, str(info[f"{arch}.{key}"])))
    model_rows.append(("quantization", str(details.get("quantization_level", ""))))
    out = ["", *_table("Model", model_rows)]
    projector = response.get("projector_info") or {}
    if projector:
        parch = projector.get("general.architecture", "")
        rows = [
            ("architecture", str(parch)),
            ("parameters", human_number(int(projector.get("general.parameter_count", 0)))),
        ]
        for key, label in (
            ("embedding_length", "embedding length"),
            ("projection_dim", "dimensions"),
        ):
            if f"{parch}.vision.{key}" in projector:
                rows.append((label, str(projector[f"{parch}.vision.{key}"])))
        out += _table("Projector", rows)
    if response.get("capabilities"):
        out += _text("Capabilities", list(response["capabilities"]))
    if response.get("parameters"):
        params = [tuple(line.split(None, 1)) for line in response["parameters"].splitlines()]
        out += _table("Parameters", [(p[0], p[1] if len(p) > 1 else "") for p in params])
    if response.get("system"):
        out += _text("System", [response["system"]])
    if response.get("license"):
        out += _text("License", [response["license"]])
    out += _table(
        "Layers",
        [
            (kind, f"{digest[7:19]}  {human_size(size):>8}  {src}".rstrip())
            for kind, digest, size, src in layers
        ],
    )
    return "\n".join(out)


@click.command()
@click.argument("name")
@click.option(
    "--modelfile", "part", flag_value="modelfile", help="Print a Modelfile that rebuilds it."
)
@click.option("--parameters", "part", flag_value="parameters", help="Print its parameters.")
@click.option("--template", "part", flag_value="template", help="Print its prompt template.")
@click.option("--system", "part", flag_value="system", help="Print its system prompt.")
@click.option("--license", "part", flag_value="license", help="Print its license(s).")
@click.option("-v", "--verbose", is_flag=True, help="With --json: full metadata arrays.")
@store_options
def command(name: str, part: str | None, verbose: bool, models: str | None, as_json: bool) -> None:
    """Show the model NAME: its details, parameters, system prompt, license and layers."""
    from toolchain.describe import show_response
    from toolchain.store import load_model
    from toolchain.store.mediatypes import SHORT_NAMES

    store = open_store(models)
    model = load_model(store, name)
    response = show_response(model, verbose=verbose)
    if as_json:
        print_json({part: response.get(part, "")} if part else response)
        return
    if part is not None:
        text = str(response.get(part, ""))
        click.echo(text, nl=not text.endswith("\n"))
        return
    layers = [
        (SHORT_NAMES.get(layer.media_type, layer.media_type), layer.digest, layer.size, layer.from_)
        for layer in model.manifest.layers
    ]
    click.echo(summary(response, layers))
