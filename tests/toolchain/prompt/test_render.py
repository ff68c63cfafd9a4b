# ruff: noqa: E501  # noqa: RUF100
"""The reference's template tests (spec §2.9) on our prompt renderer."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from toolchain.gotemplate import TemplateError
from toolchain.prompt import collate, parse_prompt_template, render_prompt, template_vars
from toolchain.prompt.data import message_from_json


def m(role: str, content: str, **kw: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **kw}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        ("{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}", ["prompt", "response", "system", "tools"]),
        ("{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}", ["content", "messages", "role"]),
        ('{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} {{ .Content }}{{ end }}{{ end }}',
         ["content", "messages", "role", "toolname"]),
        ("{{- if .Messages }}\n{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
         "<|im_start|>assistant\n{{ else -}}\n{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
         "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
         "{{ .Response }}<|im_end|>\n{{- end -}}",
         ["content", "messages", "prompt", "response", "role", "system"]),
    ],
)  # fmt: skip
def test_parse_vars(source: str, expected: list[str]) -> None:
    assert list(parse_prompt_template(source).vars) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [("{{ .Prompt ", "unclosed action"),
     ('{{define "x"}}{{template "x"}}{{end}}{{template "x"}}', "undefined template specified")],
)  # fmt: skip
def test_parse_errors(source: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as err:
        parse_prompt_template(source)
    assert fragment in str(err.value).lower()


MISTRAL = [
    m("user", "Hello friend!"),
    m("assistant", "Hello human!"),
    m("user", "What is your name?"),
]
MISTRAL_SYSTEM = [m("system", "You are a helpful assistant!"), *MISTRAL]
VARIANTS = {
    "no response": "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] ",
    "response": "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] {{ .Response }}",
    "messages": '[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n{{- range .Messages }}\n{{- if eq .Role "user" }}'
    '{{ .Content }}[/INST] {{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n{{- end }}',
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_execute_with_messages_mistral(variant: str) -> None:
    assert render_prompt(VARIANTS[variant], messages=MISTRAL) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )
    assert render_prompt(VARIANTS[variant], messages=MISTRAL_SYSTEM) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] What is your name?[/INST] "
    )


@pytest.mark.parametrize(
    "source",
    ["[INST] {{ .Prompt }}[/INST] ", "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
     '\n{{- range $i, $m := .Messages }}\n{{- if eq .Role "user" }}[INST] {{ .Content }}[/INST] '
     '{{ else if eq .Role "assistant" }}{{ .Content }}{{ end }}\n{{- end }}'],
)  # fmt: skip
def test_execute_assistant_prefill(source: str) -> None:
    msgs = [*MISTRAL, m("assistant", "My name is Ollama and I")]
    assert render_prompt(source, messages=msgs) == (
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is Ollama and I"
    )


@pytest.mark.parametrize(
    "source",
    ["{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}{{ if .Prompt }}<|im_start|>user\n"
     "{{ .Prompt }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
     "\n{{- range $index, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
     "<|im_start|>assistant\n"],
)  # fmt: skip
def test_execute_chatml(source: str) -> None:
    assert render_prompt(source, messages=MISTRAL_SYSTEM) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n<|im_start|>user\nHello friend!<|im_end|>\n"
        "<|im_start|>assistant\nHello human!<|im_end|>\n<|im_start|>user\nWhat is your name?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_execute_with_suffix() -> None:
    src = "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n{{- else }}{{ .Prompt }}\n{{- end }}"
    assert render_prompt(src, messages=[m("user", "hello")]) == "hello"
    assert (
        render_prompt(src, prompt="def add(", suffix="return x")
        == "<PRE> def add( <SUF>return x <MID>"
    )


def test_date_functions() -> None:
    today = dt.date.today()
    src = "{{- range .Messages }}{{ .Content }}{{ end }} Today is {{ currentDate }}"
    assert render_prompt(src, messages=[m("user", "Hello")]) == f"Hello Today is {today:%Y-%m-%d}"
    src = "{{- range .Messages }}{{ end }}{{ yesterdayDate }}"
    assert (
        render_prompt(src, messages=[m("user", "Hello")])
        == f"{today - dt.timedelta(days=1):%Y-%m-%d}"
    )


def test_collate() -> None:
    msgs = [message_from_json(x) for x in [m("user", "Hello"), m("user", "How are you?")]]
    system, out = collate(msgs)
    assert (system, [(x.Role, x.Content) for x in out]) == ("", [("user", "Hello\n\nHow are you?")])
    tools = [
        m("tool", "sunny", tool_name="get_weather"),
        m("tool", "72F", tool_name="get_temperature"),
    ]
    system, out = collate([message_from_json(x) for x in tools])
    assert [(x.Content, x.ToolName) for x in out] == [
        ("sunny", "get_weather"),
        ("72F", "get_temperature"),
    ]
    mixed = [m("system", "You are helpful"), m("user", "Hello"), m("assistant", "Hi there!"),
             m("user", "What's the weather?"), *tools, m("user", "Thanks")]  # fmt: skip
    system, out = collate([message_from_json(x) for x in mixed])
    assert system == "You are helpful" and len(out) == 7


CALL = {"function": {"name": "get_weather", "arguments": {"location": "Tokyo", "unit": "celsius"}}}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City name"}}}}}  # fmt: skip


def test_tool_arguments_and_properties_print_as_json() -> None:
    src = (
        "{{- range .Messages }}{{- range .ToolCalls }}{{ .Function.Arguments }}{{- end }}{{- end }}"
    )
    out = render_prompt(src, messages=[m("assistant", "", tool_calls=[CALL])])
    assert json.loads(out) == {"location": "Tokyo", "unit": "celsius"} and out == (
        '{"location":"Tokyo","unit":"celsius"}'
    )
    src = "{{- range .Messages }}{{- end }}{{- range .Tools }}{{ .Function.Parameters.Properties }}{{- end }}"
    out = render_prompt(src, messages=[m("user", "test")], tools=[TOOL])
    assert out == '{"location":{"type":"string","description":"City name"}}'


def test_tool_arguments_and_properties_range() -> None:
    src = ("{{- range .Messages }}{{- range .ToolCalls }}{{- range $k, $v := .Function.Arguments }}"
           "{{ $k }}={{ $v }};{{- end }}{{- end }}{{- end }}")  # fmt: skip
    call = {"function": {"name": "f", "arguments": {"city": "Tokyo"}}}
    assert render_prompt(src, messages=[m("assistant", "", tool_calls=[call])]) == "city=Tokyo;"
    src = ("{{- range .Messages }}{{- end }}{{- range .Tools }}{{- range $name, $prop := "
           ".Function.Parameters.Properties }}{{ $name }}:{{ $prop.Type }};{{- end }}{{- end }}")  # fmt: skip
    assert render_prompt(src, messages=[m("user", "x")], tools=[TOOL]) == "location:string;"


def test_integer_arguments_are_float64() -> None:
    src = "{{ range .Messages }}{{ range .ToolCalls }}{{ range $k, $v := .Function.Arguments }}{{ $v }} {{ json $v }}{{ end }}{{ end }}{{ end }}"
    call = {"function": {"name": "f", "arguments": {"n": 100000000}}}
    assert render_prompt(src, messages=[m("assistant", "", tool_calls=[call])]) == "1e+08 100000000"


def test_default_template_and_generate_path() -> None:
    assert render_prompt(None, prompt="hi", system="sys") == "hi"
    src = "{{ .System }}|{{ .Prompt }}|{{ .Response }}"
    assert render_prompt(src, prompt="hi", system="sys") == "sys|hi|"
    assert render_prompt(src, prompt="hi", model_system="model sys") == "model sys|hi|"


def test_template_vars_walks_defined_templates() -> None:
    pt = parse_prompt_template('{{ define "x" }}{{ .Foo }}{{ end }}{{ template "x" .Messages }}')
    assert "foo" in template_vars(pt.template) and "messages" in pt.vars


def test_legacy_cut_inside_branch_with_else_is_an_error() -> None:
    src = "{{ if .Prompt }}{{ .Response }}x{{ else }}y{{ end }}"
    with pytest.raises(TemplateError):
        render_prompt(src, messages=[m("user", "a")])
