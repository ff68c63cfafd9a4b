# ruff: noqa: E501
"""Field chains through missing map keys and nil values, under each `missingkey` option,
against Go's own text/template: `{{ .M.c.x }}` with no key `c` is `<no value>` by default
(a field of the invalid value is the invalid value), `nil pointer evaluating interface
{}.x` under `missingkey=zero` (Ollama's option: the missing key is a nil interface) and
`map has no entry for key "c"` under `missingkey=error`; the same in `with`, `if`,
`range`, pipelines, function arguments, variables and `index`."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.oracle.go_oracle import GoOracle
from tests.toolchain.gotemplate.grammar import DATA
from toolchain.gotemplate import TemplateError, parse_with
from toolchain.gotemplate.funcmap import OLLAMA_FUNCS

pytestmark = pytest.mark.oracle

#: the oracle's mode for each of our missingkey options
MODES = {"invalid": "exec:default", "zero": "exec", "error": "exec:error"}
DATA_MORE: dict[str, Any] = {
    **DATA,
    # per-iteration receivers: the same access site sees a key, no key, nil, {}, a string
    "LMM": [{"c": {"x": "cx"}}, {}, {"c": None}, {"c": {}}, {"c": "s"}],
}
RECEIVERS = [".M", ".EM", "$.M", ".Missing", ".Nil", ".M.nested", "(index .LM 0)", "(.M)"]
KEYS = [".c", ".zz", ".nested", ".a", ".x"]
WRAPS = [
    "{{ %s }}",
    "{{ with %s }}w{{ . }}{{ else }}e{{ end }}",
    "{{ if %s }}y{{ else }}n{{ end }}",
    "{{ range %s }}r{{ else }}e{{ end }}",
    '{{ printf "%%v|%%T" %s }}',
    "{{ %s | print }}",
    '{{ index %s "x" }}',
    "{{ len %s }}",
    "{{ eq %s nil }}",
    "{{ json %s }}",
    "{{ not %s }}",
    "{{ and %s 1 }}",
    "{{ $v := %s }}{{ $v }}{{ $v.q }}",
    "{{ (%s).q }}",
]
LOOPS = [
    "{{ range .LMM }}{{ .c.x }};{{ end }}",
    "{{ range .LMM }}{{ with .c.x }}{{ . }}{{ end }};{{ end }}",
    "{{ range $m := .LMM }}{{ $m.c.x }};{{ end }}",
    "{{ range .LMM }}{{ .c.x.y }};{{ end }}",
    '{{ range .LMM }}{{ index . "c" }};{{ end }}',
    "{{ range .LMM }}{{ if .c }}{{ .c.x }}{{ end }};{{ end }}",
]


def chain_templates() -> list[str]:
    chains = [
        r + "".join(ks)
        for r in RECEIVERS
        for n in (1, 2)
        for ks in itertools.product(KEYS, repeat=n)
    ]
    chains += [r + ".c.x.y" for r in RECEIVERS] + [r + ".zz.nested.x" for r in RECEIVERS]
    return [w % c for c in chains for w in WRAPS] + LOOPS


def ours(text: str, missingkey: str) -> tuple[bool, bytes, str]:
    try:
        return True, parse_with(text, "", OLLAMA_FUNCS, missingkey).execute_bytes(DATA_MORE), ""
    except TemplateError as exc:
        return False, b"", exc.message


@pytest.mark.parametrize("missingkey", list(MODES))
def test_chains_through_missing_keys_match_go(go_oracle: GoOracle, missingkey: str) -> None:
    templates = chain_templates()
    results = go_oracle.run([(MODES[missingkey], t, DATA_MORE) for t in templates])
    bad = []
    for text, ref in zip(templates, results, strict=True):
        ok, out, msg = ours(text, missingkey)
        if (ok, out if ok else msg) != (ref.ok, ref.output if ref.ok else ref.error):
            bad.append((text, ref, (ok, out, msg)))
    assert not bad, f"{len(bad)}/{len(templates)} differ, first: {bad[:3]}"


# Go 1.23's answers, written down (and checked against the oracle below)
FACTS = [
    ("invalid", "{{ .EM.c.x }}", "<no value>"),
    ("invalid", "{{ .EM.c.x.y }}", "<no value>"),
    ("invalid", "{{ .M.nested.zz.x }}", "<no value>"),
    ("invalid", "{{ with .EM.c.x }}yes{{ else }}no{{ end }}", "no"),
    ("invalid", "{{ if .EM.c.x }}yes{{ else }}no{{ end }}", "no"),
    ("invalid", '{{ printf "%v" .EM.c.x }}', "<nil>"),
    ("invalid", "{{ json .EM.c.x }}", "null"),
    ("zero", "{{ .EM.c }}", "<no value>"),
    ("zero", "{{ (.EM.c).x }}", "<no value>"),
    ("zero", "{{ $v := .EM.c }}{{ $v.x }}", "<no value>"),
    ("zero", "{{ with .EM.c }}{{ .x }}{{ else }}none{{ end }}", "none"),
]
ERRORS = [
    ("zero", "{{ .EM.c.x }}", 'template: :1:6: executing "" at <.EM.c.x>: nil pointer evaluating interface {}.x'),
    ("zero", "{{ if .EM.c.x }}{{ end }}", 'template: :1:9: executing "" at <.EM.c.x>: nil pointer evaluating interface {}.x'),
    ("error", "{{ .EM.c.x }}", 'template: :1:6: executing "" at <.EM.c.x>: map has no entry for key "c"'),
    ("invalid", '{{ index .EM.c "x" }}', 'template: :1:3: executing "" at <index .EM.c "x">: error calling index: index of untyped nil'),
    ("zero", '{{ index .EM.c "x" }}', 'template: :1:3: executing "" at <index .EM.c "x">: error calling index: index of untyped nil'),
    ("invalid", "{{ .Nil.x }}", 'template: :1:7: executing "" at <.Nil.x>: nil pointer evaluating interface {}.x'),
]  # fmt: skip


@pytest.mark.parametrize(("missingkey", "text", "want"), FACTS)
def test_chain_values(missingkey: str, text: str, want: str) -> None:
    assert ours(text, missingkey) == (True, want.encode(), "")


@pytest.mark.parametrize(("missingkey", "text", "want"), ERRORS)
def test_chain_errors(missingkey: str, text: str, want: str) -> None:
    assert ours(text, missingkey) == (False, b"", want)


def test_written_answers_are_go_s(go_oracle: GoOracle) -> None:
    cases = [(m, t, (True, w.encode(), "")) for m, t, w in FACTS]
    cases += [(m, t, (False, b"", w)) for m, t, w in ERRORS]
    results = go_oracle.run([(MODES[m], t, DATA_MORE) for m, t, _ in cases])
    for (_, text, want), ref in zip(cases, results, strict=True):
        assert (ref.ok, ref.output, ref.error) == want, text
