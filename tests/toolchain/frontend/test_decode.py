"""Byte decoding as the reference's BOMOverride(UTF8) + bufio.ReadRune (spec §1.2, §1.3)."""

from __future__ import annotations

import pytest

from toolchain.frontend import parse_modelfile


def system_value(data: bytes) -> str:
    return parse_modelfile(data).instructions[1].value


@pytest.mark.parametrize(
    "data,value",
    [
        (b"FROM x\nSYSTEM \xe2\x82A", "\ufffdA"),  # no BOM: maximal subpart, one U+FFFD
        (b"\xef\xbb\xbfFROM x\nSYSTEM \xe2\x82A", "\ufffd\ufffdA"),  # BOM: one U+FFFD per byte
        (b"\xef\xbb\xbfFROM x\nSYSTEM \xf0\x9f\x98A", "\ufffd\ufffd\ufffdA"),
        (b"\xff\xfe" + "FROM x\nSYSTEM ".encode("utf-16-le") + b"\x00\xd8A\x00", "\ufffdA"),
        (b"\xfe\xff" + "FROM x\nSYSTEM a".encode("utf-16-be") + b"\x00", "a\ufffd"),
        (b"FROM x\nSYSTEM a\x00b\xe2\x80\x8bc\xc2\xa0d", "abcd"),  # non-printables dropped
        (b'FROM x\nSYSTEM "a\x00"\x00"', 'a\x00"'.replace("\x00", "")),
    ],
)
def test_decoding(data: bytes, value: str) -> None:
    assert system_value(data) == value


def test_bom_only_at_the_start() -> None:
    mf = parse_modelfile(b"\xef\xbb\xbfFROM x\n\xef\xbb\xbfSYSTEM y\n")
    # a U+FEFF later is a dropped character in front of a keyword: still a keyword
    assert mf.commands() == [("model", "x"), ("system", "y")]


def test_str_input_is_its_utf8_bytes() -> None:
    assert parse_modelfile("\ufeffFROM x").commands() == [("model", "x")]
