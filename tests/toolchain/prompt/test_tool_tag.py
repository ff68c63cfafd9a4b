# ruff: noqa: E501
"""The tool-call tag read from a template's parse tree: the reference's parseTag table
(tools/template_test.go), restated, plus the shapes real templates take."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CONFORMANCE
from tests.oracle.go_oracle import GoOracle
from toolchain.gotemplate import TemplateError, parse
from toolchain.prompt import named_template, template_names, tool_call_tag, tool_call_tag_of_source

CALL_JSON = '{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}'

# (what the case shows, template, tag) — the reference's table
REFERENCE = [
    ("no template at all", "", "{"),
    ("a ToolCalls branch without text", "{{if .ToolCalls}}{{end}}", "{"),
    ("only an action inside the range", "{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
    ("a fenced json opener", "{{if .ToolCalls}}```json\n{{end}}", "```json"),
    ("a bracket before the range", "{{if .ToolCalls}}[{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
    ("a bracket after blank text", "{{if .ToolCalls}}\n [ {{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "["),
    ("text only after the range is not taken",
     "{{if .ToolCalls}}{{range .ToolCalls}}{{ . }}{{end}}]{{end}}", "{"),
    ("a blank text before the range", "{{if .ToolCalls}} {{range .ToolCalls}}{{ . }}{{end}}{{end}}", "{"),
    ("blank text inside the range", "{{if .ToolCalls}}{{range .ToolCalls}}\n{{ . }}\n{{end}}{{end}}", "{"),
    ("bare JSON calls", "{{if .ToolCalls}}{{range .ToolCalls}}" + CALL_JSON + "{{end}}{{end}}", "{"),
    ("bare JSON calls after a newline",
     "{{if .ToolCalls}}{{range .ToolCalls}}\n" + CALL_JSON + "{{end}}{{end}}", "{"),
    ("bare JSON calls after CRLF",
     "{{if .ToolCalls}}{{range .ToolCalls}}\r\n" + CALL_JSON + "{{end}}{{end}}", "{"),
    ("bare JSON calls with blank text around the range",
     "{{if .ToolCalls}}\n{{range .ToolCalls}}\n" + CALL_JSON + "\r\n{{end}}\r\n{{end}}", "{"),
    ("DeepSeek's markers before the range",
     "{{if .ToolCalls}}<|tool▁calls▁begin|>{{range .ToolCalls}}<|tool▁call▁begin|>functionget_current_weather\n"
     '```json\n{"location": "Tokyo"}\n```<|tool▁call▁end|>\n{{end}}<|tool▁calls▁end|>{{end}}',
     "<|tool▁calls▁begin|>"),
    ("the tag inside the range",
     "{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>" + CALL_JSON + "</tool_call>{{end}}{{end}}", "<tool_call>"),
    ("the tag inside the range after blank text",
     "{{if .ToolCalls}}\n{{range .ToolCalls}}<tool_call>" + CALL_JSON + "</tool_call>{{end}}{{end}}", "<tool_call>"),
    ("the tag repeated as the closer",
     "{{if .ToolCalls}}{{range .ToolCalls}}<tool_call>" + CALL_JSON + "<tool_call>{{end}}{{end}}", "<tool_call>"),
    ("several texts: the first one",
     "{{if .ToolCalls}}First text{{if .Something}}inner{{end}}Second text{{end}}", "First text"),
    ("Command-R's action line", "{{if .ToolCalls}}Action: ```json{{end}}", "Action: ```json"),
    ("an unclosed bracket stays", "{{if .ToolCalls}}functools[{{end}}", "functools["),
    ("a marker and a spaced bracket", "{{if .ToolCalls}}[TOOL_CALL] [{{end}}", "[TOOL_CALL] ["),
    ("a marker and an adjacent bracket", "{{if .ToolCalls}}[TOOL_CALL][{{end}}", "[TOOL_CALL]["),
]  # fmt: skip

QWEN25 = """{{- range $i, $_ := .Messages }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- end }}<|im_start|>assistant
"""

# the walk's other rules: where the branch may sit, what ends the search for text
MORE = [
    ("Qwen2.5: an else-if inside an else-if inside the messages range", QWEN25, "<tool_call>"),
    ("inside a with body", "{{ with .Messages }}{{ if .ToolCalls }}<call>{{ end }}{{ end }}", "<call>"),
    ("inside a with's else", "{{ with .X }}{{ else }}{{ if .ToolCalls }}<call>{{ end }}{{ end }}", "<call>"),
    ("inside a range's else", "{{ range .X }}{{ else }}{{ if .ToolCalls }}<call>{{ end }}{{ end }}", "<call>"),
    ("the first ToolCalls branch wins",
     "{{ if .ToolCalls }}<a>{{ end }}{{ if .ToolCalls }}<b>{{ end }}", "<a>"),
    ("a field argument among others", "{{ if and .Tools .ToolCalls }}<call>{{ end }}", "<call>"),
    ("a chain ending in ToolCalls", "{{ if .Message.ToolCalls }}<call>{{ end }}", "<call>"),
    ("a variable is not a field", "{{ if $.ToolCalls }}<a>{{ end }}{{ if .ToolCalls }}<b>{{ end }}", "<b>"),
    ("a parenthesised pipeline is not an argument",
     "{{ if (len .ToolCalls) }}<a>{{ end }}{{ if .ToolCalls }}<b>{{ end }}", "<b>"),
    ("range over ToolCalls is not a branch", "{{ range .ToolCalls }}<tool_call>{{ end }}", "{"),
    ("an action before the text ends the search", "{{ if .ToolCalls }}{{ .X }}<call>{{ end }}", "{"),
    ("a nested branch's else text", "{{ if .ToolCalls }}{{ if .X }}{{ .Y }}{{ else }}<e>{{ end }}{{ end }}", "<e>"),
    ("a nested branch without text ends the search",
     "{{ if .ToolCalls }}{{ if .X }} {{ end }}<call>{{ end }}", "{"),
    ("the else branch of the ToolCalls if is not looked at", "{{ if .ToolCalls }}{{ else }}<e>{{ end }}", "{"),
    ("CRLF folds to LF inside the tag", "{{ if .ToolCalls }}<a>\r\n<b>{{ end }}", "<a>\n<b>"),
    ("Unicode spaces are trimmed as Go trims them", "{{ if .ToolCalls }}\u3000<call>\u00a0{{ end }}", "<call>"),
    ("trim markers apply before the tag is read", "{{ if .ToolCalls -}}  \n <call>{{ end }}", "<call>"),
    ("defined templates are not searched", '{{ define "x" }}{{ if .ToolCalls }}<a>{{ end }}{{ end }}', "{"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "source", "tag"), REFERENCE + MORE, ids=[c[0] for c in REFERENCE + MORE]
)
def test_tag(case: str, source: str, tag: str) -> None:  # fmt: skip
    assert tool_call_tag_of_source(source) == tag
    if source:
        assert tool_call_tag(parse(source)) == tag


def test_no_template_or_one_that_does_not_parse_means_bare_json() -> None:
    assert tool_call_tag(None) == "{"
    assert tool_call_tag_of_source(None) == "{"
    assert tool_call_tag_of_source("{{ if .ToolCalls }}<call>") == "{"  # unclosed if


# -- against Go's own parse tree ------------------------------------------------------------
TEXTS = ["", " ", "\n", "\r\n", "<tool_call>", "\n<tool_call>\n", "[TOOL_CALLS] [", '{"name": ',
         "  {x}", "Action: ```json\n[", "\u3000<t>\u00a0", "a\r\nb", "\t", "\x1c<fs>"]  # fmt: skip
ACTIONS = ["{{ .Content }}", "{{- .X -}}", "{{ $x := 1 }}", "{{/* c */}}", "{{- /* c */ -}}",
           '{{ template "t" . }}', "{{ json .Function.Arguments }}"]  # fmt: skip
CONDITIONS = [".ToolCalls", "$.ToolCalls", ".Message.ToolCalls", "and .Tools .ToolCalls",
              "(len .ToolCalls)", ".Content", "not .ToolCalls", 'eq .Role "assistant"']  # fmt: skip
BLOCKS = ["if", "range", "with"]


@st.composite
def _body(draw: st.DrawFn, depth: int) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from("ttab" if depth >= 3 else "ttabbb"))
        if kind == "t":
            out.append(draw(st.sampled_from(TEXTS)))
        elif kind == "a":
            out.append(draw(st.sampled_from(ACTIONS)))
        else:
            block = draw(st.sampled_from(BLOCKS))
            cond = draw(st.sampled_from([".ToolCalls", *CONDITIONS]))
            dash = draw(st.sampled_from(["", "- "]))
            rest = draw(_body(depth + 1))
            if draw(st.booleans()):
                other = draw(st.sampled_from(CONDITIONS))
                elses = {"if": f"else if {other}", "with": f"else with {other}", "range": "else"}
                rest += f"{{{{ {draw(st.sampled_from([elses[block], 'else']))} }}}}"
                rest += draw(_body(depth + 1))
            out.append(f"{{{{{dash}{block} {cond} }}}}" + rest + "{{ end }}")
    return "".join(out)


def generated(n: int) -> list[str]:
    out: list[str] = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_body(0))
    def draw(x: str) -> None:
        out.append(x)

    draw()
    return list(dict.fromkeys(out))


@pytest.mark.oracle
def test_tags_match_go(go_oracle: GoOracle) -> None:
    sources = [src for _, src, _ in REFERENCE + MORE if src]
    sources += [named_template(n).template for n in template_names()]
    # the reference's own templates too, where ../shared is beside this clone
    sources += [p.read_text() for p in sorted((CONFORMANCE / "templates").glob("*.gotmpl"))]
    sources += generated(1500)
    assert sum("ToolCalls" in s for s in sources) > 500
    results = go_oracle.run([("tag", s, None) for s in sources])
    bad = []
    for source, ref in zip(sources, results, strict=True):
        try:
            ours = (True, tool_call_tag(parse(source)).encode())
        except TemplateError:
            ours = (False, b"")
        if ours != (ref.ok, ref.output):
            bad.append((source, ref, ours))
    assert not bad, f"{len(bad)}/{len(sources)} differ, first: {bad[:3]}"
    tags = {r.output for r in results if r.ok}
    assert len(tags) > 10  # the corpus reaches many different tags
