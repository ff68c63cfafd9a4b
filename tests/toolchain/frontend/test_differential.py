"""The grammar-based parser against an independent transcription of the reference's state
machine (reference_parser.py), on generated text; and the "no traceback, ever" property.

Done when: arbitrary text never raises anything but the diagnostic error type.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.toolchain.frontend.reference_parser import RejectedError, reference_parse
from toolchain.diagnostics import Diagnostic, render
from toolchain.errors import MfcError
from toolchain.frontend import (
    MissingFromError,
    ModelfileSyntaxError,
    ParserError,
    UnexpectedEOFError,
    check_modelfile,
    format_modelfile,
    parse_modelfile,
)
from toolchain.frontend.check import check_source

KINDS = {ParserError: "parser", UnexpectedEOFError: "eof", MissingFromError: "from"}

# pieces that exercise every state and transition of the reference machine
PIECES = st.sampled_from(
    [
        "FROM",
        "from",
        "FrOm",
        "PARAMETER",
        "parameter",
        "MESSAGE",
        "SYSTEM",
        "TEMPLATE",
        "LICENSE",
        "ADAPTER",
        "DRAFT",
        "RENDERER",
        "PARSER",
        "REQUIRES",
        "system",
        "user",
        "assistant",
        "User",
        "stop",
        "num_ctx",
        "x",
        "1",
        "a b",
        " ",
        "  ",
        "\t",
        "\n",
        "\r",
        "\r\n",
        '"',
        '""',
        '"""',
        "#",
        "# c\n",
        "\x00",
        "\xa0",
        "\u200b",
        "\ufeff",
        "é",
        "ſ",
        "\u212a",
        "-",
        "_",
        ".",
        ":",
        "{{ .Prompt }}",
    ]
)
MODELFILE_TEXT = st.lists(PIECES, max_size=24).map("".join)


def outcome_of_reference(text: str) -> tuple[str, object]:
    # parse_modelfile takes a str as its UTF-8 bytes, so a leading U+FEFF is a BOM
    text = text.removeprefix("\ufeff")
    try:
        return "ok", reference_parse(text)
    except RejectedError as rejected:
        return rejected.kind, rejected.text


def outcome_of_mfc(text: str) -> tuple[str, object]:
    try:
        return "ok", parse_modelfile(text).commands()
    except ModelfileSyntaxError as err:
        return KINDS[type(err)], str(err)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MODELFILE_TEXT, st.booleans())
def test_same_outcome_as_the_reference_machine(text: str, with_from: bool) -> None:
    if with_from:
        text = "FROM base\n" + text
    assert outcome_of_mfc(text) == outcome_of_reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_any_text_same_outcome_as_the_reference_machine(text: str, with_from: bool) -> None:
    if with_from:
        text = "FROM base\n" + text
    assert outcome_of_mfc(text) == outcome_of_reference(text)


def _exercise(data: bytes | str) -> None:
    """Everything a user can reach with these bytes: parse, check, fmt, render."""
    try:
        mf = parse_modelfile(data, "Modelfile")
    except ModelfileSyntaxError as err:
        assert err.span is not None
        render(Diagnostic.from_error(err), None)
    else:
        check_modelfile(mf)
        format_modelfile(mf)
    mf, diags = check_source(data, "Modelfile")
    for diag in diags:
        assert diag.span is not None
        render(diag, mf.source)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_diagnostics(data: bytes) -> None:
    try:
        _exercise(data)
    except MfcError:
        raise AssertionError("check_source must report, not raise") from None


@settings(max_examples=400, deadline=None)
@given(st.one_of(MODELFILE_TEXT, st.text(max_size=200)))
def test_arbitrary_text_only_raises_diagnostics(text: str) -> None:
    _exercise(text)
