# ruff: noqa: E501  # noqa: RUF100
"""Templates cannot reach Python, read files or run forever."""

from __future__ import annotations

import tracemalloc

import pytest

from toolchain.gotemplate import Limits, TemplateError, parse
from toolchain.prompt import render_prompt

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("field", ["__class__", "__init__", "__dict__", "go_string", "go_fields",
                                   "go_json_value", "type_name", "__slots__"])  # fmt: skip
def test_python_attributes_and_methods_are_unreachable(field: str) -> None:
    src = "{{ range .Messages }}{{ ." + field + " }}{{ end }}"
    with pytest.raises(TemplateError, match=f"can't evaluate field {field} in type"):
        render_prompt(src, messages=MSG)


def test_dict_methods_are_map_lookups_not_calls() -> None:
    assert (
        parse("{{ .keys }}|{{ .items }}|{{ .get }}").execute({})
        == "<no value>|<no value>|<no value>"
    )
    assert parse("{{ .__class__ }}").execute({"__class__": "x"}) == "x"


def test_only_declared_methods_are_callable() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
              "properties": {"a": {"type": ["string", "null"]}}}}}]  # fmt: skip
    src = "{{ range .Tools }}{{ range .Function.Parameters.Properties }}{{ .ToTypeScriptType }}|{{ .Type.String }}{{ end }}{{ end }}{{ .Messages }}"
    assert render_prompt(src, messages=MSG, tools=tools).startswith("string | null|[string null]")
    with pytest.raises(TemplateError, match="can't evaluate field to_typescript_type"):
        render_prompt(
            "{{ range .Tools }}{{ range .Function.Parameters.Properties }}{{ .to_typescript_type }}{{ end }}{{ end }}{{ .Messages }}",
            messages=MSG,
            tools=tools,
        )


def test_no_file_or_environment_functions() -> None:
    for fn in ("open", "readFile", "env", "exec", "include", "getattr"):
        with pytest.raises(TemplateError, match=f'function "{fn}" not defined'):
            parse("{{ " + fn + ' "/etc/passwd" }}')


def test_range_iterations_are_capped() -> None:
    src = "{{ range .L }}{{ range $.L }}{{ range $.L }}x{{ end }}{{ end }}{{ end }}"
    with pytest.raises(TemplateError, match="range iterations exceed 1000") as err:
        parse(src).execute({"L": list(range(20))}, Limits(max_iterations=1000))
    assert err.value.kind == "limit"
    with pytest.raises(TemplateError, match="range iterations exceed"):
        parse("{{ range 100000000 }}{{ end }}").execute({}, Limits(max_iterations=10_000))


def test_output_size_is_capped() -> None:
    src = "{{ range .L }}{{ $.S }}{{ end }}"
    with pytest.raises(TemplateError, match="output exceeds 1000 characters"):
        parse(src).execute({"L": list(range(100)), "S": "x" * 100}, Limits(max_output=1000))


def test_recursive_templates_are_capped() -> None:
    src = '{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}'
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        parse(src).execute({})


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    src = "{{ if 1 }}" * 2000 + "{{ end }}" * 2000
    with pytest.raises(TemplateError):
        parse(src).execute({})


# -- issue 13: renders are bounded in time and memory ------------------------------------------

#: the issue's 1.8 KB Modelfile template: 28 definitions, each calling the previous one twice
FAN_OUT = (
    '{{ define "t0" }}x{{ end }}'
    + "".join(
        f'{{{{ define "t{i}" }}}}{{{{ template "t{i - 1}" . }}}}{{{{ template "t{i - 1}" . }}}}'
        "{{ end }}"
        for i in range(1, 29)
    )
    + '{{ template "t28" . }}'
)


def test_template_calls_that_fan_out_are_capped() -> None:
    with pytest.raises(TemplateError, match="template calls exceed 100000") as err:
        parse(FAN_OUT).execute({})  # 2^28 calls before
    assert err.value.kind == "limit"
    with pytest.raises(TemplateError, match="template calls exceed 10"):
        parse(FAN_OUT).execute({}, Limits(max_calls=10))


def test_a_render_has_a_deadline() -> None:
    # no time at all: the first check (every 256 range steps, every template call) fails
    with pytest.raises(TemplateError, match="execution exceeds 0 seconds") as err:
        parse("{{ range 1000 }}{{ end }}").execute({}, Limits(max_seconds=0))
    assert err.value.kind == "limit"
    with pytest.raises(TemplateError, match="execution exceeds 0 seconds"):
        parse('{{ define "a" }}{{ end }}{{ template "a" }}').execute({}, Limits(max_seconds=0))


@pytest.mark.parametrize(
    ("src", "want"),
    [
        # Go's fmt: a * width or precision past 1e6 is BADWIDTH/BADPREC, nothing allocated
        ('{{ printf "%*d" 300000000 1 }}', "%!(BADWIDTH)1"),
        ('{{ printf "%*d" -1000001 1 }}', "%!(BADWIDTH)1"),
        ('{{ printf "%.*d" 300000000 1 }}', "%!(BADPREC)1"),
        ('{{ printf "%*d|" -1000000 1 | len }}', "1000001"),
        # a literal width is read digit by digit until it passes a million before the next
        ('{{ printf "%10000000d|" 1 | len }}', "10000001"),
        ('{{ printf "%12345678x" 1 }}', "%!(NOVERB)%!(EXTRA int=1)"),
        ('{{ printf "%99999999999999999999d" 1 }}', "%!(NOVERB)%!(EXTRA int=1)"),
    ],
)
def test_printf_widths_as_go_bounds_them(src: str, want: str) -> None:
    assert parse(src).execute({}) == want  # outputs of Go 1.19's text/template


@pytest.mark.parametrize("fn", ['printf "%s%s"', "print", 'printf "%v%v"'])
def test_a_value_doubled_in_a_variable_is_capped(fn: str) -> None:
    src = '{{ $x := "ab" }}{{ range 40 }}{{ $x = ' + fn + " $x $x }}{{ end }}{{ len $x }}"
    with pytest.raises(TemplateError, match="value exceeds 1000 characters") as err:
        parse(src).execute({}, Limits(max_output=1000))
    assert err.value.kind == "limit"
    with pytest.raises(TemplateError, match=r"value exceeds \d+ characters"):
        parse(src).execute({})  # 2^41 characters before


@pytest.mark.parametrize("fn", ['printf "%s%s"', "print", "println"])
def test_a_value_over_the_cap_is_refused_before_it_is_built(fn: str) -> None:
    """Building the refused value was one C call holding the GIL: ~20 ms for 32 MB, which
    every other request of the server waited for (issue 13's hostile load)."""
    src = '{{ $x := "ab" }}{{ range 40 }}{{ $x = ' + fn + " $x $x }}{{ end }}"
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match="value exceeds 1048576 characters"):
            parse(src).execute({}, Limits(max_output=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the last value allowed (under 1 MB) and the one before it; not the 2 MB one refused
    assert peak < 2 << 20
