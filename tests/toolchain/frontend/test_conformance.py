"""Done when: every case of ../shared/conformance/parser/cases.json (read in place) gives the
recorded commands, or is rejected with the recorded error text and kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from toolchain.frontend import (
    MissingFromError,
    ModelfileSyntaxError,
    ParserError,
    UnexpectedEOFError,
    parse_modelfile,
)
from toolchain.frontend.show import modelfile_text

ERROR_KINDS = {
    "errMissingFrom": MissingFromError,
    "ErrUnexpectedEOF": UnexpectedEOFError,
    "ParserError": ParserError,
}


def load_cases(conformance_dir: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(
        (conformance_dir / "parser" / "cases.json").read_text(encoding="utf-8")
    )
    return cases


def input_bytes(text: str) -> bytes:
    """The file's bytes. The recorder wrote Go strings as JSON, so the two bytes of a UTF-16
    BOM (invalid UTF-8) arrive as two U+FFFD; the rest (ASCII and NULs) is byte-exact."""
    if text.startswith("\ufffd\ufffd"):
        body = text[2:]
        bom = b"\xfe\xff" if body.startswith("\0") else b"\xff\xfe"
        return bom + body.encode("latin-1")
    return text.encode("utf-8")


def test_every_case_has_the_recorded_outcome(conformance_dir: Path) -> None:
    cases = load_cases(conformance_dir)
    assert len(cases) >= 80
    failures = []
    for case in cases:
        data = input_bytes(case["input"])
        try:
            got: Any = [list(c) for c in parse_modelfile(data).commands()]
        except ModelfileSyntaxError as err:
            kind = next(k for k in ERROR_KINDS if case["err_type"].startswith(k))
            if str(err) != case["err"] or not isinstance(err, ERROR_KINDS[kind]):
                failures.append((case["input"], str(err), case["err"]))
            continue
        if case["err"] is not None or got != case["commands"]:
            failures.append((case["input"], got, case["err"] or case["commands"]))
    assert failures == []


def test_utf16_cases_are_really_decoded_from_utf16(conformance_dir: Path) -> None:
    utf16 = [c for c in load_cases(conformance_dir) if c["test"] == "TestParseFileUTF16ParseFile"]
    assert len(utf16) == 2
    for case in utf16:
        data = input_bytes(case["input"])
        assert data[:2] in (b"\xff\xfe", b"\xfe\xff")
        assert parse_modelfile(data).commands()[0] == ("model", "bob")


def test_rendering_reparses_to_the_same_commands(conformance_dir: Path) -> None:
    """TestParseFileFormatParseFile's property, on every accepted case."""
    for case in load_cases(conformance_dir):
        if case["err"] is not None:
            continue
        commands = parse_modelfile(input_bytes(case["input"])).commands()
        text = modelfile_text(commands)
        if any(name == "model" and args != args.strip() for name, args in commands):
            continue  # FROM is never quoted: edge spaces are lost (a documented reference quirk)
        assert parse_modelfile(text).commands() == commands, case["input"]


@pytest.mark.parametrize(
    "encoding,bom", [("utf-8", b""), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")]
)
def test_multibyte(encoding: str, bom: bytes) -> None:
    """TestParseMultiByte."""
    data = bom + "FROM test\n\tSYSTEM 你好👋".encode(encoding)
    assert parse_modelfile(data).commands() == [("model", "test"), ("system", "你好👋")]
