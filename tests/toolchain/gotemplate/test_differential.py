# noqa: RUF100
"""Go's own text/template against ours on generated templates: same bytes, or both error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle.go_oracle import GoOracle
from tests.toolchain.gotemplate.grammar import DATA, template
from toolchain.gotemplate import TemplateError, parse

N_CASES = 1500

pytestmark = pytest.mark.oracle


def collect(strategy: st.SearchStrategy[str], n: int, seed: int) -> list[str]:
    """Draw `n` examples deterministically (hypothesis generates; the oracle judges later)."""
    out: list[str] = []

    @settings(max_examples=n, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(strategy)
    def draw(x: str) -> None:
        out.append(x)

    draw()
    return list(dict.fromkeys(out))


def ours(text: str, data: Any) -> tuple[bool, bytes, str]:
    try:
        return True, parse(text).execute_bytes(data), ""
    except TemplateError as exc:
        return False, b"", exc.message


def test_generated_templates_match_go(go_oracle: GoOracle) -> None:
    templates = collect(template(), N_CASES, seed=0)
    assert len(templates) >= 1000
    results = go_oracle.run([("exec", t, DATA) for t in templates])
    mismatches = []
    same_messages = errors = 0
    for text, ref in zip(templates, results, strict=True):
        ok, out, msg = ours(text, DATA)
        if ok != ref.ok or (ok and out != ref.output):
            mismatches.append((text, ref, (ok, out, msg)))
        elif not ok:
            errors += 1
            same_messages += msg == ref.error
    detail = "\n\n".join(
        f"TEMPLATE {t!r}\n  go:   {r.ok} {r.output!r} {r.error}\n  ours: {o}"
        for t, r, o in mismatches[:10]
    )
    assert not mismatches, f"{len(mismatches)}/{len(templates)} differ:\n{detail}"
    # error texts are Go's own in the vast majority of cases (some reflect.Value details differ)
    assert errors == 0 or same_messages / errors > 0.9, (same_messages, errors)


CONSTRUCTS = [
    "{{ range $i, $e := .L }}{{ $i }}={{ $e }};{{ else }}none{{ end }}",
    "{{ range .MZ }}{{ . }},{{ end }}|{{ range $k, $v := .MZ }}{{ $k }}:{{ $v }} {{ end }}",
    "{{ range .LN }}{{ if gt . 2.0 }}{{ break }}{{ end }}{{ . }} {{ end }}",
    "{{ range .LN }}{{ if lt . 0.0 }}{{ continue }}{{ end }}{{ . }} {{ end }}",
    "{{ with .M.nested }}{{ .x }}{{ else with .S }}{{ . }}{{ else }}no{{ end }}",
    "{{ with .Missing }}{{ . }}{{ else with .S }}[{{ . }}]{{ end }}",
    '{{ define "t" }}<{{ . }}>{{ end }}{{ template "t" .S }}{{ block "b" .N }}({{ . }}){{ end }}',
    "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}",
    '{{ printf "%5.2f|%-4d|%q|%x|%T|%v" .F 7 "a\\tb" "hi" .N .LX }}',
    '{{ print 1 2 "c" 3 4 nil }}{{ println .L .M }}',
    "{{ .Big }} {{ .Huge }} {{ .Small }} {{ json .LN }} {{ json .M }} {{ json .Small }}",
    '{{ and 0 (index .L 10) }} {{ or .E .L }} {{ not .EM }} {{ eq .S "x" "hello" }}',
    "{{ len .U }} {{ slice .U 1 3 }} {{ index .U 1 }} {{ html .U }} {{ js .U }} {{ urlquery .U }}",
    "{{ 'a' }} {{ 0x10 }} {{ 1_000 }} {{ 017 }} {{ 1e3 }} {{ `raw\\n` }} {{ \"\\u00e9\\x41\" }}",
    "{{ (index .LM 1).Content }} {{ $m := index .LM 2 }}{{ $m.Role }}",
    "{{- /* comment */ -}} a {{- 1 -}} b {{-3}}",
    "{{ .Missing.X }}",
    "{{ len .Missing }}",
    "{{ nil }}",
    "{{ index .L 5 }}",
    '{{ template "nope" }}',
    "{{ range .S }}{{ end }}",
    "{{ eq .L .L }}",
    "{{ lt true false }}",
    '{{ printf "%d %s" "x" }}{{ printf "%s" 1 2 }}',
]


def test_hand_written_constructs_match_go(go_oracle: GoOracle) -> None:
    results = go_oracle.run([("exec", t, DATA) for t in CONSTRUCTS])
    for text, ref in zip(CONSTRUCTS, results, strict=True):
        ok, out, msg = ours(text, DATA)
        assert (ok, out) == (ref.ok, ref.output), (text, ref, msg)
        if not ok:
            assert msg == ref.error, text
