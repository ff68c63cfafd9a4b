# ruff: noqa: E501
"""Every bundled template that takes `tools` (so a model detected with it advertises the
`tools` capability) shows calls with a tag the parser finds: the turn the template writes
for an assistant's tool calls, read back as model output, gives the same calls."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.tools import ToolCallParser
from toolchain.gotemplate import parse
from toolchain.prompt import (
    go_trim_space,
    named_template,
    render_prompt,
    template_names,
    template_vars,
    tool_call_tag_of_source,
)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a zone",
     "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}},
]  # fmt: skip
CALLS = [
    {"function": {"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "C", "days": 2}}},
    {"function": {"name": "get_time", "arguments": {}}},
]
ASK = {"role": "user", "content": "Weather and time in Tokyo?"}
THEN = {"role": "user", "content": "Thanks. And tomorrow?"}
TOOL_TEMPLATES = [
    n for n in template_names() if "tools" in template_vars(parse(named_template(n).template))
]


def test_which_bundled_templates_take_tools() -> None:
    assert TOOL_TEMPLATES == ["chatml", "command-r", "llama3-instruct"]


def shared_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def assistant_turn(template: str, message: dict[str, Any]) -> str:
    """What the template writes for `message` as the assistant's turn (between the parts a
    plain answer shares with it), i.e. what the model would have generated."""
    plain = render_prompt(template, messages=[ASK, {"role": "assistant", "content": "Sunny."}, THEN],
                          tools=TOOLS)  # fmt: skip
    turn = render_prompt(template, messages=[ASK, message, THEN], tools=TOOLS)
    head = shared_prefix(plain, turn)
    tail = shared_prefix(plain[head:][::-1], turn[head:][::-1])
    assert plain[head : len(plain) - tail] == "Sunny."  # the plain answer is all that differs
    return turn[head : len(turn) - tail]


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
@pytest.mark.parametrize("calls", [CALLS[:1], CALLS], ids=["one call", "two calls"])
def test_calls_round_trip(name: str, calls: list[dict[str, Any]]) -> None:
    template = named_template(name).template
    tag = tool_call_tag_of_source(template)
    written = assistant_turn(template, {"role": "assistant", "content": "", "tool_calls": calls})
    assert tag in written
    want = [(c["function"]["name"], c["function"]["arguments"]) for c in calls]
    for chunks in ([written], list(written)):  # whole, and one character at a time
        parser = ToolCallParser(TOOLS, template)
        content = ""
        found = []
        for chunk in chunks:
            text, got = parser.feed(chunk)
            content += text
            found += got
        content += parser.flush()
        assert [(c.name, c.arguments) for c in found] == want, (name, written)
        assert go_trim_space(content) == "", (name, written)


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_a_plain_answer_stays_content(name: str) -> None:
    template = named_template(name).template
    parser = ToolCallParser(TOOLS, template)
    answer = "It is sunny in Tokyo; get_weather says 21C."
    text, calls = parser.feed(answer)
    assert (text + parser.flush(), calls) == (answer, [])


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_the_next_turn_shows_the_call(name: str) -> None:
    template = named_template(name).template
    written = assistant_turn(
        template, {"role": "assistant", "content": "", "tool_calls": CALLS[:1]}
    )
    assert "get_weather" in written and '"city":"Tokyo"' in written


def test_chatml_keeps_content_before_the_calls() -> None:
    """An assistant turn with text and calls keeps both; read back, the text is content."""
    template = named_template("chatml").template
    message = {"role": "assistant", "content": "Let me check.", "tool_calls": CALLS[:1]}
    written = assistant_turn(template, message)
    assert written == (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city":"Tokyo","days":2,"unit":"C"}}\n</tool_call>'
    )
    parser = ToolCallParser(TOOLS, template)
    content, calls = parser.feed(written)
    assert content == "Let me check.\n" and [c.name for c in calls] == ["get_weather"]
