# ruff: noqa: E501, RUF028
"""The Jinja fallback against transformers' own chat-template rendering, and its sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from toolchain.prompt import JinjaChatError, render_jinja_chat

pytestmark = pytest.mark.oracle

CHATS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "Hello, how are you?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
    ],  # fmt: skip
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
        {"role": "user", "content": "ü <b>"},
    ],
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip


def _reference(template: str, chat: list[dict[str, Any]], tools: Any, gen: bool) -> str | None:
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        rendered, _ = render_jinja_template(conversations=[chat], tools=tools, chat_template=template,
                                            add_generation_prompt=gen, bos_token="<s>", eos_token="</s>")  # fmt: skip
    except Exception:  # the template rejects this chat (raise_exception)
        return None
    return str(rendered[0])


def test_matches_transformers_on_the_reference_jinja_templates(conformance_dir: Path) -> None:
    index = json.loads((conformance_dir / "templates" / "index.json").read_text())
    compared = 0
    for entry in index:
        for chat in CHATS:
            for tools in (None, TOOLS):
                ref = _reference(entry["template"], chat, tools, True)
                if ref is None:
                    with pytest.raises(JinjaChatError):
                        render_jinja_chat(entry["template"], chat, tools, True, "<s>", "</s>")
                    continue
                got = render_jinja_chat(entry["template"], chat, tools, True, "<s>", "</s>")
                assert got == ref, entry["name"]
                compared += 1
    assert compared > 150


def test_matches_transformers_on_smollm2(smollm2_gguf: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(smollm2_gguf)
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    for chat in CHATS:
        assert render_jinja_chat(template, chat) == _reference(template, chat, None, True)


@pytest.mark.parametrize(
    "template",
    ["{{ messages.__class__.__mro__ }}", "{{ ''.__class__.__base__.__subclasses__() }}",
     "{{ messages.append(1) }}", "{{ raise_exception('no system role') }}", "{% for x in %}"],
)  # fmt: skip
def test_sandbox_rejects_escapes_and_reports_errors(template: str) -> None:
    with pytest.raises(JinjaChatError):
        render_jinja_chat(template, CHATS[0])


def test_output_is_bounded() -> None:
    with pytest.raises(JinjaChatError, match="exceeds"):
        render_jinja_chat("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", CHATS[0])
