# ruff: noqa: E501  # noqa: RUF100
"""`mfc check` on TEMPLATEs: Go's parse errors at Modelfile positions, unknown-field warnings."""

from __future__ import annotations

from toolchain.frontend import parse_modelfile
from toolchain.frontend.template_check import check_templates


def diags(src: str) -> list[tuple[str, int, int, str]]:
    out = []
    for d in check_templates(parse_modelfile(src, "Modelfile")):
        assert d.span is not None
        out.append((d.severity, d.span.line, d.span.col, d.message))
    return out


def test_parse_error_points_into_the_modelfile() -> None:
    src = 'FROM llama3\nTEMPLATE """line\n  {{ if .X }}"""\n'
    assert diags(src) == [("error", 3, 14, "template: :2: unexpected EOF")]
    assert diags("FROM x\nTEMPLATE {{ .Prompt\n") == [
        ("error", 2, 20, "template: :1: unclosed action")
    ]
    assert diags('FROM x\nTEMPLATE "{{ foo }}"\n') == [
        ("error", 2, 14, 'template: :1: function "foo" not defined')
    ]


def test_unknown_fields_are_warnings_with_suggestions() -> None:
    src = ('FROM x\nTEMPLATE """{{ .System }}{{ range .Messages }}{{ .Contnt }}{{ end }}\n'
           '{{ .Promt }}{{ with .Function.Arguments }}{{ .city }}{{ end }}{{ $.Tols }}"""\n')  # fmt: skip
    found = diags(src)
    assert [(s, line, col) for s, line, col, _ in found] == [
        ("warning", 2, 50),
        ("warning", 3, 4),
        ("warning", 3, 67),
    ]
    assert ".Contnt" in found[0][3] and ".Promt" in found[1][3] and ".Tols" in found[2][3]


def test_valid_templates_have_no_diagnostics() -> None:
    from toolchain.prompt import named_template, template_names

    for name in template_names():
        text = named_template(name).template.replace('"""', "")
        assert diags(f'FROM x\nTEMPLATE """{text}"""\n') == [], name
