# ruff: noqa: E501  # noqa: RUF100
"""Behaviour the Go 1.23 oracle cannot show (Go >= 1.24 features) and our error positions."""

from __future__ import annotations

import pytest

from toolchain.gojson import marshal
from toolchain.gotemplate import TemplateError, parse
from toolchain.gotemplate.gofmt import format_float_g_shortest


def run(src: str, data: object = None) -> str:
    return parse(src).execute({} if data is None else data)


def test_range_over_int_go_1_24() -> None:
    assert run("{{ range 3 }}{{ . }}{{ end }}") == "012"
    assert run("{{ range $i := 3 }}{{ $i }}{{ end }}") == "012"
    assert run("{{ range 0 }}x{{ else }}empty{{ end }}") == "empty"
    assert run("{{ range len .L }}{{ . }}{{ end }}", {"L": [1, 2]}) == "01"
    with pytest.raises(TemplateError, match="can't use 3 to iterate over more than one variable"):
        run("{{ range $i, $e := 3 }}{{ end }}")
    with pytest.raises(TemplateError, match="range can't iterate over 3"):
        run("{{ range .N }}{{ end }}", {"N": 3.0})


def test_error_positions() -> None:
    with pytest.raises(TemplateError) as err:
        run("line one\n  {{ .A.B.C }}", {"A": {"B": "x"}})
    assert err.value.message == (
        'template: :2:7: executing "" at <.A.B.C>: can\'t evaluate field C in type interface {}'
    )
    assert (err.value.line, err.value.col) == (2, 8)
    with pytest.raises(TemplateError) as err:
        parse("a\n\n{{ if }}")
    assert err.value.message == "template: :3: missing value for if"
    assert err.value.line == 3


@pytest.mark.parametrize(
    ("x", "text"),
    [(0.0, "0"), (5.0, "5"), (1.5, "1.5"), (100000.0, "100000"), (1e6, "1e+06"), (1234567.0, "1.234567e+06"),
     (1e21, "1e+21"), (0.0001, "0.0001"), (1e-5, "1e-05"), (-2.5, "-2.5"), (1e100, "1e+100")],
)  # fmt: skip
def test_float_printing(x: float, text: str) -> None:
    assert format_float_g_shortest(x) == text


def test_go_json() -> None:
    data = {
        "z": 1.0,
        "a": "x<y>&",
        "n": 1e21,
        "m": 1e-7,
        "i": 5.0,
        "l": [1.5, True, None],
        "c": "\b\f\u2028",
    }
    assert marshal(data) == (
        '{"a":"x\\u003cy\\u003e\\u0026","c":"\\b\\f\\u2028","i":5,"l":[1.5,true,null],"m":1e-7,"n":1e+21,"z":1}'
    )
    assert run("{{ json .X }}", {"X": float("nan")}) == ""


def test_parse_is_cached() -> None:
    assert parse("{{ .A }}") is parse("{{ .A }}")
