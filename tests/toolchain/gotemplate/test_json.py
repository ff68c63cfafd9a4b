# noqa: RUF100
"""toolchain.gojson, the one Go-JSON encoder, as templates use it: the `json` function
against Go's on strings Go holds as invalid UTF-8 or decodes from lone surrogates, and
how template values (nil slices, typed structs) and plain Python values map to Go's."""

from __future__ import annotations

import math

import pytest

from tests.oracle.go_oracle import GoOracle
from toolchain.gojson import (
    GoStruct,
    JSONError,
    RawJSON,
    UnsupportedTypeError,
    encode,
    format_float,
    marshal,
)
from toolchain.gotemplate import GoMap, GoSlice, parse
from toolchain.prompt.data import tools_from_json

# data travels to Go as JSON text, so a lone surrogate reaches it as a \ud800 escape
ODD_STRINGS = {"S": "a\ud800b", "M": {"\ud800": 1.0, "z": 2.0, "\uffff": 3.0, "é": 4.0}}
CASES = [
    '{{ json (slice "é" 0 1) }}|{{ json (slice "éa" 1) }}|{{ json (slice "日本" 1 5) }}',
    "{{ json .S }}|{{ json .M }}",
    '{{ json (print "<a href=\\"x\\">&amp;</a>\\u2028\\b\\f\\x7f\\x01") }}',
]


@pytest.mark.oracle
def test_invalid_utf8_and_lone_surrogates_match_go(go_oracle: GoOracle) -> None:
    results = go_oracle.run([("exec", t, ODD_STRINGS) for t in CASES])
    for text, ref in zip(CASES, results, strict=True):
        assert ref.ok, ref.error
        assert parse(text).execute(ODD_STRINGS).encode("utf-8") == ref.output, text


def test_invalid_bytes_escape_and_lone_surrogates_decode() -> None:
    assert marshal("a\udcc3b") == '"a\\ufffdb"'  # one invalid byte, as Go writes it
    assert marshal("a\ud800b") == '"a\ufffdb"'  # what Go's decoder made of "\ud800"
    assert encode({"\ud800": 1.0, "z": 2.0}) == '{"z":2,"\ufffd":1}\n'.encode()


def test_template_values_map_to_go_types() -> None:
    nil = GoSlice()
    nil.is_nil = True
    nil_map = GoMap()
    nil_map.is_nil = True
    assert marshal([nil, GoSlice(), nil_map, GoMap(b=1.0, a="x")]) == (
        '[null,[],null,{"a":"x","b":1}]'
    )
    nested = {"z": {"type": "string"}, "y": {"type": "integer"}}
    properties = {"b": {"type": "object", "properties": nested}, "a": {"type": ["string", "null"]}}
    parameters = {"type": "object", "properties": properties}
    tools = tools_from_json(
        [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
    )
    # struct fields in declaration order under their tags, omitempty fields dropped, the
    # parameters' properties map sorted, a property's own properties in request order
    # (api.ToolPropertiesMap), a one-element type as a string
    assert marshal(tools) == (
        '[{"type":"function","function":{"name":"f","description":"","parameters":{"type":'
        '"object","properties":{"a":{"type":["string","null"]},"b":{"type":"object",'
        '"properties":{"z":{"type":"string"},"y":{"type":"integer"}}}}}}}]'
    )


def test_plain_values() -> None:
    assert encode(GoStruct(z=1, a=[True, None])) == b'{"z":1,"a":[true,null]}\n'
    assert encode({"z": 1, "a": 2}, newline=False) == b'{"a":2,"z":1}'
    assert marshal([RawJSON('{"pre":"encoded"}'), b"\x00\xff", (1, 2.5)]) == (
        '[{"pre":"encoded"},"AP8=",[1,2.5]]'
    )
    assert marshal(1e21) == "1e+21" and marshal(1e-7) == "1e-7" and format_float(-0.0) == "-0"

    class Float(float):  # e.g. numpy.float64: a float whose repr is not Python's
        def __repr__(self) -> str:
            return f"Float({float(self)})"

    assert marshal(Float(0.1)) == "0.1"


def test_refused_values() -> None:
    with pytest.raises(JSONError, match="unsupported value"):
        marshal(math.nan)
    with pytest.raises(UnsupportedTypeError) as err:
        marshal(1j)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    assert parse("{{ json .X }}").execute({"X": math.inf}) == ""  # json drops Go's error
