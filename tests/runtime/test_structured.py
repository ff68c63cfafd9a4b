"""Structured output: with a JSON schema in `format`, every answer parses and validates."""

from __future__ import annotations

import json
import re

import jsonschema
import ollama
import pytest

from runtime.schema_grammar import integer_range, schema_to_gbnf

CAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "color": {"type": "string", "enum": ["black", "white", "orange", "gray"]},
        "indoor": {"type": "boolean"},
        "toys": {"type": "array", "items": {"type": "string", "maxLength": 15}, "maxItems": 3},
        "weight": {"type": ["number", "null"]},
    },
    "required": ["name", "age", "color", "indoor", "toys"],
    "additionalProperties": False,
}


def test_twenty_generations_all_validate(server: str) -> None:
    client = ollama.Client(host=server)
    for seed in range(20):
        answer = client.chat(
            "demo",
            messages=[{"role": "user", "content": "Describe a cat as JSON."}],
            format=CAT,
            options={"seed": seed, "temperature": 1.0, "num_predict": 200},
        )
        assert answer.done_reason == "stop", answer.message.content
        jsonschema.validate(json.loads(answer.message.content), CAT)


def _as_regex(gbnf: str) -> re.Pattern[str]:
    """An integer-range rule is regular: read it as a Python regex."""
    return re.compile(gbnf.replace("space", "").replace('"', "").replace(" ", ""))


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (0, 30),
        (5, 5),
        (-5, 5),
        (-30, -7),
        (None, 10),
        (10, None),
        (None, -3),
        (-3, None),
        (1, 999),
        (7, 1234),
        (99, 101),
        (123, 45678),
    ],
)
def test_integer_ranges_are_exact(lo: int | None, hi: int | None) -> None:
    rx = _as_regex(integer_range(lo, hi))
    for n in range(-2000, 50000):
        inside = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert bool(rx.fullmatch(str(n))) == inside, n
    assert not any(rx.fullmatch(s) for s in ("00", "-0", "01", "+1", ""))


def test_strings_never_hold_raw_control_characters() -> None:
    grammar = schema_to_gbnf({"type": "string", "maxLength": 4})
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar


def test_object_shapes() -> None:
    grammar = schema_to_gbnf(
        {"properties": {"a": {"type": "string"}, "b": {"const": 1}}, "required": ["b"]}
    )
    # required properties first, optional ones after, each with its comma
    assert 'root ::= "{" space root-b-kv ("," space root-a-kv)? "}" space' in grammar
    free = schema_to_gbnf({"type": "object", "additionalProperties": {"type": "integer"}})
    assert "root-pair" in free
