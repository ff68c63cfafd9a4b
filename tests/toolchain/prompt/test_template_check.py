# ruff: noqa: E501  # noqa: RUF100
"""`mfc check` on TEMPLATEs: Go's parse errors at Modelfile positions, unknown-field warnings."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fixtures.local_server import mfc_command
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


#: issue 13: 28 definitions, each calling the previous one twice (2^28 calls): 1.8 KB of
#: Modelfile that `check` and `build` accepted and every request then rendered forever
FAN_OUT_MODELFILE = (
    'FROM ./model.gguf\nTEMPLATE """{{ define "t0" }}x{{ end }}'
    + "".join(
        f'{{{{define "t{i}"}}}}{{{{template "t{i - 1}" .}}}}{{{{template "t{i - 1}" .}}}}{{{{end}}}}'
        for i in range(1, 29)
    )
    + '{{ template "t28" . }}{{ .Prompt }}"""\n'
)


def test_a_template_that_exceeds_render_limits_is_an_error() -> None:
    (found,) = diags(FAN_OUT_MODELFILE)
    severity, line, _, message = found
    assert severity == "error" and line == 2
    assert message.startswith("template exceeds a render limit: template: ")
    assert message.endswith("template calls exceed 100000")
    doubling = 'FROM x\nTEMPLATE """{{ $x := .Prompt }}{{ range 64 }}{{ $x = print $x $x "!" }}{{ end }}"""\n'
    ((severity, _, _, message),) = diags(doubling)
    assert severity == "error" and "value exceeds" in message


def test_mfc_check_reports_it_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text(FAN_OUT_MODELFILE)
    result = subprocess.run([*mfc_command(), "check", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "error: template exceeds a render limit" in result.stderr
