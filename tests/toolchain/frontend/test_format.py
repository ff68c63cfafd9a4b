"""`mfc fmt`'s layout. Done when: generated well-formed Modelfiles survive fmt with the same
IR, and fmt is idempotent (hypothesis); plus the layout rules on fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from toolchain.frontend import format_modelfile, parse_modelfile, parse_recovering
from toolchain.frontend.format import UnformattableValueError, format_value
from toolchain.ir import Message, Modelfile, Parameter

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "modelfiles"

KEYWORDS = [
    "FROM",
    "ADAPTER",
    "TEMPLATE",
    "SYSTEM",
    "LICENSE",
    "REQUIRES",
    "DRAFT",
    "RENDERER",
    "PARSER",
    "QUANTIZE",
    "PARAMETER",
    "MESSAGE",
]
VALUE_TEXT = st.lists(
    st.sampled_from([*"ab {}.:\"#\t\n\r'é世", "\r\n", '"""', "FROM ", "\n#"]),
    max_size=30,
).map("".join)


def ir(mf: Modelfile) -> list[tuple[str, str, str]]:
    """The IR without positions."""
    out = []
    for ins in mf.instructions:
        extra = (
            ins.name if isinstance(ins, Parameter) else ins.role if isinstance(ins, Message) else ""
        )
        out.append((ins.kind, extra, ins.value))
    return out


@st.composite
def written_value(draw: st.DrawFn) -> str:
    """A value as someone might write it: bare, "quoted" or \"\"\"quoted\"\"\", padded."""
    value = draw(VALUE_TEXT)
    style = draw(st.sampled_from(["bare", "single", "triple"]))
    if style == "bare":
        value = value.replace("\r", " ").replace("\n", " ").lstrip('"')
        written = value
    elif style == "single":
        written = '"' + value + '"'
    else:
        written = '"""' + value + '"""'
    pad = draw(st.sampled_from(["", " ", "  ", "\t"]))
    return pad + written + draw(st.sampled_from(["", " ", "\t "]))


@st.composite
def modelfile_text(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["instruction"] * 4 + ["comment", "blank"]))
        if kind == "comment":
            lines.append(
                draw(st.sampled_from(["", "  ", "\t"]))
                + "#"
                + draw(st.text(alphabet='ab #\t"', max_size=8))
            )
            continue
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
            continue
        keyword = draw(st.sampled_from(KEYWORDS))
        keyword = draw(st.sampled_from([keyword, keyword.lower(), keyword.title()]))
        sep = draw(st.sampled_from([" ", "\t"]))
        head = draw(st.sampled_from(["", " ", "\t"])) + keyword + sep
        if keyword.upper() == "PARAMETER":
            head += draw(st.sampled_from(["stop", "temperature", "num_ctx", "x_1", ""])) + sep
        elif keyword.upper() == "MESSAGE":
            head += draw(st.sampled_from(["system", "user", "assistant"])) + sep
        lines.append(head + draw(written_value()))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline]))


SETTINGS = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


@SETTINGS
@given(modelfile_text())
def test_fmt_keeps_the_ir_and_is_idempotent(text: str) -> None:
    mf, errors = parse_recovering(text)
    assume(not errors)
    once = format_modelfile(mf)
    reparsed, errors_after = parse_recovering(once)
    assert errors_after == []
    assert ir(reparsed) == ir(mf)
    assert [c.text.rstrip(" \t") for c in reparsed.comments] == [
        c.text.rstrip(" \t") for c in mf.comments
    ]
    assert format_modelfile(reparsed) == once


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([*'a "\t\n\r#', '"""', "é"]), max_size=20).map("".join))
def test_format_value_reads_back_exactly(value: str) -> None:
    try:
        written = format_value(value)
    except UnformattableValueError:
        # only a line ending in """ inside a multi-line value cannot be written
        assert any(
            value[:i].rstrip(" \t\r\n").endswith('"""')
            for i, ch in enumerate(value)
            if ch in "\r\n"
        )
        return
    assert parse_modelfile(f"FROM x\nSYSTEM {written}\n").instructions[1].value == value


@pytest.mark.parametrize(
    "value,written",
    [
        ("plain words", "plain words"),
        ("", '""'),
        (" edge ", '" edge "'),
        ('"quoted"', '""quoted""'),
        ('""x', '"""""x"""'),
        ("two\nlines", '"""two\nlines"""'),
        ("tab\tinside", "tab\tinside"),
        ("#not a comment", "#not a comment"),
    ],
)
def test_values_are_quoted_only_where_needed(value: str, written: str) -> None:
    assert format_value(value) == written


def test_messy_fixture_formats_to_the_canonical_layout() -> None:
    mf = parse_modelfile((FIXTURES / "messy" / "Modelfile").read_bytes())
    assert format_modelfile(mf) == (
        "# Written by hand: lower-case keywords, tabs, CRLF line ends, stray blanks.\n"
        "FROM ./model.gguf\n"
        "\n"
        "PARAMETER temperature 0.5\n"
        "PARAMETER stop <|eot_id|>\n"
        "# an indented comment\n"
        "TEMPLATE {{ .Prompt }}\n"
        "SYSTEM You are helpful.\n"
        'MESSAGE user "  hi  "\n'
    )


def test_canonical_fixtures_are_fixed_points() -> None:
    for name in ("everything",):
        data = (FIXTURES / name / "Modelfile").read_bytes()
        assert format_modelfile(parse_modelfile(data)).encode() == data


def test_every_fixture_keeps_its_ir() -> None:
    for path in sorted(FIXTURES.glob("*/Modelfile")):
        mf = parse_modelfile(path.read_bytes())
        assert ir(parse_modelfile(format_modelfile(mf))) == ir(mf), path
