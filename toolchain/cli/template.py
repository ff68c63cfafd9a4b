"""`mfc template render|exec`: the exact prompt a request produces, or a template on any data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import models_option
from toolchain.errors import MfcError, Span, UsageError
from toolchain.gojson import decode_any
from toolchain.gotemplate import TemplateError


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MfcError(f"cannot read {path}: {exc}") from None


def _load_json(path: str) -> Any:
    """JSON as Go's encoding/json decodes it into `any` (every number a float64, every
    string valid UTF-8)."""
    try:
        return decode_any(_read(path))
    except json.JSONDecodeError as exc:
        raise MfcError(f"{path}: invalid JSON: {exc.msg}",
                       Span(path, exc.lineno, exc.colno, exc.lineno, exc.colno + 1)) from None  # fmt: skip  # noqa: E501


def _emit(
    output: str | None, error: TemplateError | None, as_json: bool, template_file: str | None
) -> None:
    if as_json:
        print_json({"output": output} if error is None else {"error": error.message})
        if error is not None:
            sys.exit(1)
        return
    if error is not None:
        if template_file and error.line is not None and error.col is not None:
            error.span = Span(template_file, error.line, error.col, error.line, error.col + 1)
        raise error
    assert output is not None
    sys.stdout.buffer.write(output.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()


@click.group()
def command() -> None:
    """Render prompt templates (Go text/template, as Ollama runs them)."""


@command.command()
@click.option(
    "--template", "template_file", metavar="FILE", help="A template file (TEMPLATE text)."
)
@click.option(
    "--model", metavar="NAME", help="Use this stored model's template, SYSTEM and MESSAGEs."
)
@click.option("--request", "request_file", metavar="FILE", required=True,
              help="Request JSON as /api/chat or /api/generate take it ('-' for stdin).")  # fmt: skip  # noqa: E501
@models_option
@click.option("--json", "as_json", is_flag=True, help='Print {"output": ...} or {"error": ...}.')
def render(template_file: str | None, model: str | None, request_file: str, models: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Print the exact prompt REQUEST produces with a template or a stored model."""
    from toolchain.prompt import RequestError, render_prompt

    if (template_file is None) == (model is None):
        raise UsageError("give exactly one of --template FILE or --model NAME")
    request = _load_json(request_file)
    if not isinstance(request, dict):
        raise MfcError(f"{request_file}: the request must be a JSON object")
    template: str | None = None
    model_system: str | None = None
    model_messages: list[dict[str, Any]] = []
    if template_file is not None:
        template = _read(template_file)
    else:
        from toolchain.store import Store, load_model

        stored = load_model(Store.open(models), str(model))
        template, model_system = stored.template, stored.system or None
        model_messages = [dict(m) for m in stored.messages]
    if isinstance(request.get("template"), str) and request["template"]:
        template = request["template"]
    messages = request.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise MfcError(f"{request_file}: `messages` must be a list")
    think = request.get("think")
    try:
        output = render_prompt(
            template,
            messages=messages,
            tools=request.get("tools"),
            system=request.get("system"),
            prompt=request.get("prompt"),
            suffix=request.get("suffix"),
            think=think if isinstance(think, bool | str) else None,
            model_system=model_system,
            model_messages=model_messages,
        )
    except TemplateError as exc:
        _emit(None, exc, as_json, template_file)
        return
    except RequestError as exc:
        raise MfcError(f"{request_file}: {exc.message}") from None
    _emit(output, None, as_json, template_file)


@command.command(name="exec")
@click.option("--template", "template_file", metavar="FILE", required=True, help="A template file.")
@click.option("--data", "data_file", metavar="FILE", required=True,
              help="JSON data: objects as maps, arrays as slices, numbers as float64.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help='Print {"output": ...} or {"error": ...}.')
def exec_(template_file: str, data_file: str, as_json: bool) -> None:
    """Run a template on arbitrary JSON data (Ollama's function map, missingkey=zero)."""
    from toolchain.gotemplate import parse

    text = _read(template_file)
    data = _load_json(data_file)
    try:
        output = parse(text).execute(data)
    except TemplateError as exc:
        _emit(None, exc, as_json, template_file)
        return
    _emit(output, None, as_json, template_file)
