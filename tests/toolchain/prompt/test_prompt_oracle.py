# ruff: noqa: E501, RUF028
"""Ollama's Execute (rebuilt on Go's text/template in the oracle) against ours, on the
bundled and named templates and hand-written legacy/tool templates, over generated chats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle.go_oracle import GoOracle
from toolchain.gotemplate import TemplateError
from toolchain.prompt import named_template, render_prompt, template_names

pytestmark = pytest.mark.oracle

TEXT = st.sampled_from(
    ["Hello, how are you?", "", "a\nb", '<tag> & "q"', "héllo 你好", "  pad  ", "x"]
)
ARGS = st.dictionaries(st.sampled_from(["city", "n", "unit", "b", "nested"]),
                       st.one_of(st.sampled_from(["Tokyo", "", "c"]), st.sampled_from([1, 2.5, 100000000, -3]),
                                 st.booleans(), st.just({"x": [1, "y"]})), max_size=3)  # fmt: skip
CALL = st.fixed_dictionaries({"function": st.fixed_dictionaries({"name": st.sampled_from(["get_weather", "f"]),
                                                                  "arguments": ARGS})},
                             optional={"id": st.sampled_from(["call_1", "abc"])})  # fmt: skip
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "User"]), "content": TEXT}
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.just(""),
            "tool_calls": st.lists(CALL, min_size=1, max_size=2),
        }
    ),  # fmt: skip
    st.fixed_dictionaries(
        {
            "role": st.just("tool"),
            "content": TEXT,
            "tool_name": st.sampled_from(["get_weather", ""]),
        }
    ),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": TEXT, "thinking": TEXT}),
)
PROP = st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", ["string", "null"], "array"])},
                             optional={"description": TEXT, "enum": st.just(["a", "b"])})  # fmt: skip
TOOL = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries({
    "name": st.sampled_from(["get_weather", "search"]), "description": TEXT,
    "parameters": st.fixed_dictionaries({"type": st.just("object"),
                                          "properties": st.dictionaries(st.sampled_from(["location", "q", "b"]), PROP, max_size=3)},
                                         optional={"required": st.just(["location"])})})})  # fmt: skip
REQUEST = st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE, min_size=1, max_size=6)},
    optional={"tools": st.lists(TOOL, max_size=2), "think": st.sampled_from([True, False, "high"])},
)

EXTRA_TEMPLATES = [
    "{{ .System }}|{{ .Prompt }}|{{ .Response }}",
    "{{ if .System }}S:{{ .System }} {{ end }}U:{{ .Prompt }} A:{{ .Response }}</s>",
    "[INST] {{ .Prompt }} [/INST]",
    "{{ .Prompt }}{{ if .Think }} think{{ end }}",
    "{{ range .Messages }}{{ .Role }}:{{ .Content }}|{{ .Thinking }}|{{ .ToolName }}|{{ .ToolCallID }}"
    "{{ range .ToolCalls }}[{{ .ID }} {{ .Function.Index }} {{ .Function.Name }} {{ .Function.Arguments }}"
    "{{ range $k, $v := .Function.Arguments }} {{ $k }}={{ $v }}{{ end }}]{{ end }}\n{{ end }}",
    "{{ .Tools }}|{{ json .Tools }}|{{ range .Tools }}{{ . }}{{ .Function.Name }}"
    "{{ range $n, $p := .Function.Parameters.Properties }}{{ $n }}:{{ $p.Type }}:{{ toTypeScriptType $p }}"
    ":{{ $p.ToTypeScriptType }}:{{ $p.Type.String }}:{{ json $p }};{{ end }}{{ end }}{{ range .Messages }}{{ end }}",
    "{{ json .Messages }}|{{ .IsThinkSet }} {{ .Think }} {{ .ThinkLevel }}|{{ len .Messages }}",
    "{{ range .Messages }}{{ . }}{{ end }}",
    # a property without `properties` holds a nil *ToolPropertiesMap; a missing key of the
    # properties map is a zero ToolProperty (missingkey=zero)
    "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ range $n, $p := .Function.Parameters.Properties }}"
    "{{ $p.Properties }}|{{ print $p.Properties }}|{{ if $p.Properties }}y{{ end }}|{{ json $p }}|{{ $p }}"
    "|{{ eq $p.Properties nil }};{{ end }}{{ .Function.Parameters.Properties.zz.Properties }}"
    "{{ .Function.Parameters.Properties.zz.Type }}{{ .Function.Parameters.Properties.zz }}{{ end }}",
    "{{ .Prompt }}{{ json .Prompt }}",
]


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    out: list[Any] = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def draw(x: Any) -> None:
        out.append(x)

    draw()
    return out


def test_prompts_match_go(go_oracle: GoOracle, conformance_dir: Path) -> None:
    templates = [p.read_text() for p in sorted((conformance_dir / "templates").glob("*.gotmpl"))]
    templates += [named_template(n).template for n in template_names()] + EXTRA_TEMPLATES
    requests = collect(REQUEST, 120)
    cases = [("prompt", t, r) for r in requests for t in templates]
    results = go_oracle.run(cases)
    bad = []
    for (_, tmpl, req), ref in zip(cases, results, strict=True):
        try:
            got: tuple[bool, bytes] = (True, render_prompt(tmpl, **req).encode())
        except TemplateError as exc:
            got = (False, exc.message.encode())
        if got[0] != ref.ok or (got[0] and got[1] != ref.output):
            bad.append((tmpl[:80], req, ref, got))
    assert not bad, f"{len(bad)}/{len(cases)} differ; first: {bad[0]}"
