# ruff: noqa: E501
"""Model output -> tool calls + content: the reference's tables from tools/tools_test.go
(the parser over whole and chunked outputs, its pieces: tag search, argument search, the
end of a JSON answer, what is left at the end), restated as ours."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.tools import (
    FirstObject,
    ToolCallParser,
    arguments_of,
    closes,
    find_arguments,
    find_tag,
)

CALL = '{"name": "{{.Function.Name}}", "arguments": {{.Function.Arguments}}}'
TEMPLATES = {
    "qwen": "{{if .ToolCalls}}<tool_call>{{range .ToolCalls}}"
    + CALL
    + "{{end}}</tool_call>{{end}}",
    "deepseek": '{{if .ToolCalls}}<|tool▁calls▁begin|>{{range .ToolCalls}}<|tool▁call▁begin|>function<|tool▁sep|>get_current_weather\n```json\n{"location": "Tokyo"}\n```<|tool▁call▁end|>{{end}}<|tool▁calls▁end|><|end▁of▁sentence|>{{end}}',
    "json": "{{if .ToolCalls}}{{range .ToolCalls}}" + CALL + "{{end}}{{end}}",
    "mistral": "{{if .ToolCalls}}[TOOL_CALLS] [{{range .ToolCalls}}"
    + CALL
    + "{{end}}][/TOOL_CALLS]{{end}}",
    "list": "{{if .ToolCalls}}[{{range .ToolCalls}}" + CALL + "{{end}}]{{end}}",
}
TOOLS = [
    {"type": "function", "function": {"name": n}}
    for n in (
        "get_temperature",
        "get_conditions",
        "say_hello",
        "say_hello_world",
        "get_address",
        "add",
    )
]

SF = {"location": "San Francisco"}
NY = {"city": "New York"}
LONDON_F = {"city": "London", "format": "fahrenheit"}
TOKYO = {"location": "Tokyo"}

# (case, template, output chunks, content shown, calls as (name, arguments))
PARSER = [
    ("plain text", "qwen", ["Hello, how can I help you today?"], "Hello, how can I help you today?", []),
    ("nothing", "qwen", [""], "", []),
    ("one call", "qwen", ['<tool_call>{"name": "get_conditions", "arguments": {"location": "San Francisco"}}</tool_call>'], "", [("get_conditions", SF)]),
    ("empty arguments", "qwen", ['<tool_call>{"name": "get_conditions", "arguments": {}}</tool_call>'], "", [("get_conditions", {})]),
    ("text, then a call", "qwen", ['Let me check the weather. <tool_call>{"name": "get_temperature", "arguments": {"city": "New York"}}</tool_call>'], "Let me check the weather. ", [("get_temperature", NY)]),
    ("a tool named in prose is not a call", "qwen", ["Let me say hello to the user. I'll use the say_hello tool. "], "Let me say hello to the user. I'll use the say_hello tool. ", []),
    ("two calls in one list", "mistral", ['[TOOL_CALLS] [{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}, {"name": "get_conditions", "arguments": {"location": "Tokyo"}}][/TOOL_CALLS]'], "", [("get_temperature", LONDON_F), ("get_conditions", TOKYO)]),
    ("two tagged calls", "qwen", ['Okay, let\'s call both tools! <tool_call>{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}</tool_call><tool_call>{"name": "get_conditions", "arguments": {"location": "Tokyo"}}</tool_call>'], "Okay, let's call both tools! ", [("get_temperature", LONDON_F), ("get_conditions", TOKYO)]),
    ("empty arguments, then arguments", "qwen", ['Let me say hello and check the weather. <tool_call>{"name": "say_hello", "arguments": {}}</tool_call><tool_call>{"name": "get_temperature", "arguments": {"city": "London", "format": "fahrenheit"}}</tool_call>'], "Let me say hello and check the weather. ", [("say_hello", {}), ("get_temperature", LONDON_F)]),
    ("the same tool twice, the last unclosed", "qwen", ['Let me check the weather. <tool_call>{"name": "get_conditions", "arguments": {}}</tool_call><tool_call>{"name": "get_conditions", "arguments": {"location": "Tokyo"}}'], "Let me check the weather. ", [("get_conditions", {}), ("get_conditions", TOKYO)]),
    ("a name outside the JSON", "deepseek", ['<think>Wait, I need to call a tool</think><|tool▁calls▁begin|><|tool▁call▁begin|>function<|tool▁sep|>get_temperature\n```json\n{"city": "Tokyo"}\n```<|tool▁call▁end|><|tool▁calls▁end|><|end▁of▁sentence|>'], "<think>Wait, I need to call a tool</think>", [("get_temperature", {"city": "Tokyo"})]),
    ("a name outside the JSON, in pieces", "deepseek", ["<think>Wait", ", I need", " to call", " a tool</think><|too", "l▁calls▁begin", "|>", "<|tool▁call▁begin|>function<|tool▁sep|>get_temperature\n", "```json\n", '{"city": "Tokyo"}\n', "```", "<|tool▁c", "all▁end|>", "<|tool▁calls▁end|>", "<|end▁of▁sentence|>"], "<think>Wait, I need to call a tool</think>", [("get_temperature", {"city": "Tokyo"})]),
    ("bare JSON in pieces", "json", ["{", '"name": "get_temperature",', '"arguments": {', '"city": "Tokyo"', "}", "}"], "", [("get_temperature", {"city": "Tokyo"})]),
    ("bare JSON not finished yet", "json", ["{", '"name": "get_temperature",', '"arguments": {'], "", []),
    ("bare JSON naming no tool is content", "json", ["{", '"name": "search", ', '"arguments": {', '"query": "What is the capital of Canada?"', "}", "}"], '{"name": "search", "arguments": {"query": "What is the capital of Canada?"}}', []),
    ("after a JSON answer, everything is content", "json", ['{"name": "jeff"}', '{"name": "get_conditions", "arguments": {"location": "San Francisco"}}'], '{"name": "jeff"}{"name": "get_conditions", "arguments": {"location": "San Francisco"}}', []),
    ("after a JSON answer, split", "json", ['{"name": "jeff"} {', '"name": "get_conditions", "arguments": {"location": "San Francisco"}}'], '{"name": "jeff"} {"name": "get_conditions", "arguments": {"location": "San Francisco"}}', []),
    ("code with braces", "json", ['for { fmt.Println("hello") }'], 'for { fmt.Println("hello") }', []),
    ("a list of calls in pieces", "list", ["[", "{", '"name": "get_temperature", ', '"arguments": {', '"city": "London"', "}", "},", "{", '"name": "get_conditions", ', '"arguments": {', '"location": "Tokyo"', "}", "}]"], "", [("get_temperature", {"city": "London"}), ("get_conditions", TOKYO)]),
    ("a list never closed", "list", ["[{", '"name": "get_conditions", ', '"arguments": {', '"location": "Tokyo"', "}", "}"], "", [("get_conditions", TOKYO)]),
    ("a list naming no tool, never closed", "list", ["[", "{", '"name": "search", ', '"arguments": {', '"query": "What is the capital of Canada?"', "}", "}"], "", []),
    ("a list closed twice", "list", ["[", "{", '"name": "get_conditions", ', '"arguments": {', '"location": "Tokyo"', "}", "}", "]", "]"], "", [("get_conditions", TOKYO)]),
    ("brackets around prose", "list", ["[special", " del", "ivery]"], "[special delivery]", []),
    ("a name that may grow waits", "qwen", ["<tool_call>", "{", '"name": "say_hello', '_world",', '"arguments": {}}', "}"], "", [("say_hello_world", {})]),
    ("names that grow, twice", "qwen", ["<tool_call>", "{", '"name": "say_hello', '_world",', '"arguments": {}}', "</tool_call>", "<tool_call>", "{", '"name": "say_hello', '",', '"arguments": {}}', "</tool_call>"], "", [("say_hello_world", {}), ("say_hello", {})]),
    ("a cut-off name is no call", "qwen", ['<tool_call>{"name": "say_hello'], "", []),
    ("shorter name first, whole", "qwen", ['<tool_call>{"name": "say_hello", "arguments": {}}</tool_call><tool_call>{"name": "say_hello_world", "arguments": {}}'], "", [("say_hello", {}), ("say_hello_world", {})]),
    ("the shorter name", "qwen", ['<tool_call>{"name": "say_hello", "arguments": {}}</tool_call>'], "", [("say_hello", {})]),
    ("the longer name", "qwen", ['<tool_call>{"name": "say_hello_world", "arguments": {}}</tool_call>'], "", [("say_hello_world", {})]),
    ("a name containing another, bare JSON", "json", ["{", '"name": "get_address",', '"arguments": {', '"location": "London"', "}", "}"], "", [("get_address", {"location": "London"})]),
    ("a name containing another, tagged", "qwen", ['<tool_call>{"name": "get_address", "arguments": {"location": "London"}}</tool_call>'], "", [("get_address", {"location": "London"})]),
    ("arguments before the name", "qwen", ['<tool_call>{"arguments": {"a": "5", "b": "10"}, "name": "add"}</tool_call>'], "", [("add", {"a": "5", "b": "10"})]),
]  # fmt: skip


def run(
    template: str, chunks: list[str]
) -> tuple[str, list[tuple[str, dict[str, Any]]], list[int]]:
    parser = ToolCallParser(TOOLS, TEMPLATES[template])
    content = ""
    calls = []
    for chunk in chunks:
        text, found = parser.feed(chunk)
        content += text
        calls += found
    return content, [(c.name, c.arguments) for c in calls], [c.index for c in calls]


@pytest.mark.parametrize(
    ("case", "template", "chunks", "content", "calls"), PARSER, ids=[c[0] for c in PARSER]
)
def test_parser(case: str, template: str, chunks: list[str], content: str, calls: list[Any]) -> None:  # fmt: skip
    got_content, got_calls, indexes = run(template, chunks)
    assert (got_content, got_calls) == (content, calls)
    assert indexes == list(range(len(calls)))


@pytest.mark.parametrize(
    ("case", "template", "chunks", "content", "calls"), PARSER, ids=[c[0] for c in PARSER]
)
def test_parser_one_character_at_a_time(case: str, template: str, chunks: list[str], content: str, calls: list[Any]) -> None:  # fmt: skip
    """The calls do not depend on how the output is split (content may differ only where
    the reference's own table shows that a split changes it)."""
    text = "".join(chunks)
    whole = run(template, [text])
    by_char = run(template, list(text))
    assert by_char[1] == whole[1] == calls


# (case, tag, buffer, whether a complete JSON value is there)
CLOSES = [
    ("nothing, tagged", "<tool_call>", "", False),
    ("object still open", "{", '{"name": "get_weather"', False),
    ("object closed", "{", '{"name": "get_weather"}', True),
    ("empty object", "{", "{}", True),
    ("list still open", "[", '[{"name": "get_weather"', False),
    ("list closed", "[", '[{"name": "get_weather"}]', True),
    ("empty list", "[", "[]", True),
    ("a brace inside a string", "{", '{"note": "a}b"', False),
    ("closed after a brace inside a string", "{", '{"note": "a}b"}', True),
    ("a bracket inside a string", "[", '[{"note": "x]y"}', False),
]


@pytest.mark.parametrize(("case", "tag", "buffer", "want"), CLOSES, ids=[c[0] for c in CLOSES])
def test_closes(case: str, tag: str, buffer: str, want: bool) -> None:
    assert closes(buffer, tag) is want


# (case, tag, text held back, calls found before, what flush gives)
LEFT = [
    ("nothing", "{", "", 0, ""),
    ("an unfinished tagged call", "<tool_call>", '<tool_call>{"name": "get_temperature"', 0, ""),
    (
        "a JSON object and no call",
        "{",
        '{"name": "get_temperature"}',
        0,
        '{"name": "get_temperature"}',
    ),
    ("another JSON object and no call", "{", '{"hello": "world"}', 0, '{"hello": "world"}'),
    ("a JSON object after a call", "{", '{"hello": "world"}', 1, ""),
    (
        "a list and no call",
        "[",
        '[{"name": "get_temperature"}]',
        0,
        '[{"name": "get_temperature"}]',
    ),
    ("code", "{", '{ fmt.Println("hello")', 0, '{ fmt.Println("hello")'),
]


@pytest.mark.parametrize(("case", "tag", "held", "count", "want"), LEFT, ids=[c[0] for c in LEFT])
def test_flush(case: str, tag: str, held: str, count: int, want: str) -> None:
    parser = ToolCallParser(TOOLS, tag=tag)
    parser.buffer, parser.count = held, count
    assert parser.flush() == want


# (case, buffer, tag, index, found)
TAG_AT = [
    ("absent", "hello world", "<tool_call>", -1, False),
    ("the whole buffer", "<tool_call>", "<tool_call>", 0, True),
    ("after spaces", '    <tool_call>\n {"name": "bob"}', "<tool_call>", 4, True),
    ("with more after it", '<tool_call>{"name"', "<tool_call>", 0, True),
    ("after text", "text <tool_call>", "<tool_call>", 5, True),
    ("a longer tag", "<tool_calls><tool_call>", "<tool_calls>", 0, True),
    ("shorter than the tag, not its start", "<tool>", "<tool_call>", -1, False),
    ("empty buffer", "", "<tool_call>", -1, False),
    ("one character of the tag at the end", "test<", "<tool_call>", 4, False),
    ("part of the tag at the end", "hello <tool_", "<tool_call>", 6, False),
    ("a bracket tag", "calling tools: [", "[", 15, True),
    ("a brace tag", '{"name": "bob"', "{", 0, True),
    ("a brace tag after newlines", '\n\n{\n"name": "bob"', "{", 2, True),
]


@pytest.mark.parametrize(
    ("case", "buffer", "tag", "index", "found"), TAG_AT, ids=[c[0] for c in TAG_AT]
)
def test_find_tag(case: str, buffer: str, tag: str, index: int, found: bool) -> None:
    assert find_tag(buffer, tag) == (index, found)


SF_F = {"format": "fahrenheit", "location": "San Francisco, CA"}
# (case, buffer, the tool looked for, arguments found)
ARGUMENTS = [
    ("empty", "", "", None),
    ("blank", "   \n\t  ", "", None),
    ("an object never closed", '{"format": "fahrenheit", "location": "San Francisco"', "", None),
    ("one closing brace too many", '{"format": "fahrenheit"}}', "", {"format": "fahrenheit"}),
    ("not JSON", '{format: fahrenheit, location: "San Francisco"}', "", None),
    ("name and arguments", '{"name": "get_temperature", "arguments": {"format": "fahrenheit", "location": "San Francisco, CA"}}', "", SF_F),
    ("an object between markers", '[tool]get_temperature[args]{"format": "fahrenheit", "location": "San Francisco, CA"}[end]', "", SF_F),
    ("a call inside an open list", '[{"name": "get_temperature", "arguments": {"format": "fahrenheit", "location": "San Francisco, CA"}}', "", SF_F),
    ("a call nested in function", '{"function": {"name": "get_temperature", "arguments": {"format": "fahrenheit", "location": "San Francisco, CA"}}}', "", SF_F),
    ("an object in parentheses", 'get_temperature({"location": "San Francisco, CA"})', "", {"location": "San Francisco, CA"}),
    ("the first of two calls", '[{"name": "get_temperature", "arguments": {"location": "San Francisco, CA", "format": "fahrenheit"}}, {"name": "get_weather", "arguments": {"location": "San Francisco, CA", "format": "fahrenheit"}}]', "", {"location": "San Francisco, CA", "format": "fahrenheit"}),
    ("DeepSeek's fenced object", '<|tool▁calls▁begin|><|tool▁call▁begin|>function<|tool▁sep|>get_temperature\n```json\n{"location": "Tokyo"}\n```<|tool▁call▁end|><|tool▁calls▁end|><|end▁of▁sentence|>', "", {"location": "Tokyo"}),
    ("the tail of a call", '"arguments": {"location": "Tokyo"}}</tool_call>', "", {"location": "Tokyo"}),
    ("braces in a string", '{"name": "process_code", "arguments": {"code": "if (x > 0) { return true; }"}}', "", {"code": "if (x > 0) { return true; }"}),
    ("JSON in a string", '{"name": "send_data", "arguments": {"payload": "{\\"nested\\": {\\"key\\": \\"value\\"}}"}}', "", {"payload": '{"nested": {"key": "value"}}'}),
    ("escaped quotes and braces", '{"name": "analyze", "arguments": {"text": "The JSON is: {\\"key\\": \\"val{ue}\\"}"}}', "", {"text": 'The JSON is: {"key": "val{ue}"}'}),
    ("a closing brace in a string, another object after", '{"name": "test", "arguments": {"query": "find } in text"}} {"name": "other"}', "", {"query": "find } in text"}),
    ("an unmatched closing brace in a string", '{"name": "search", "arguments": {"pattern": "regex: }"}}', "", {"pattern": "regex: }"}),
    ("mixed braces in an escaped string", '{"name": "analyze", "arguments": {"data": "{\\"items\\": [{\\"value\\": \\"}\\"}, {\\"code\\": \\"if (x) { return y; }\\"}]}"}}', "", {"data": '{"items": [{"value": "}"}, {"code": "if (x) { return y; }"}]}'}),
    ("escaped newlines and braces", '{"name": "format", "arguments": {"template": "{\\n  \\"key\\": \\"value\\"\\n}"}}', "", {"template": '{\n  "key": "value"\n}'}),
    ("unicode escapes of braces", '{"name": "test", "arguments": {"text": "Unicode: \\u007B and \\u007D"}}', "", {"text": "Unicode: { and }"}),
    ("arguments that are a list", '{"name": "batch", "arguments": ["item1", "item2", "{\\"nested\\": true}"]}', "", None),
    ("an escaped backslash before a quote", '{"name": "path", "arguments": {"dir": "C:\\\\Program Files\\\\{App}\\\\"}}', "", {"dir": "C:\\Program Files\\{App}\\"}),
    ("single quotes are not strings", '{"name": "query", "arguments": {"sql": "SELECT * FROM users WHERE name = \'{admin}\'"}}', "", {"sql": "SELECT * FROM users WHERE name = '{admin}'"}),
    ("cut off inside a string", '{"name": "test", "arguments": {"data": "some {"', "", None),
    ("several escaped quotes", '{"name": "echo", "arguments": {"msg": "He said \\"Hello {World}\\" loudly"}}', "", {"msg": 'He said "Hello {World}" loudly'}),
    ("a comment-like string", '{"name": "code", "arguments": {"snippet": "// This is a comment with { and }"}}', "", {"snippet": "// This is a comment with { and }"}),
    ("consecutive escaped backslashes", '{"name": "test", "arguments": {"path": "C:\\\\\\\\{folder}\\\\\\\\"}}', "", {"path": "C:\\\\{folder}\\\\"}),
    ("an empty string, then braces", '{"name": "test", "arguments": {"a": "", "b": "{value}"}}', "", {"a": "", "b": "{value}"}),
    ("braces in keys", '{"name": "test", "arguments": {"key{": "value", "key}": "value2"}}', "", {"key{": "value", "key}": "value2"}),
    ("a long string of braces", '{"name": "test", "arguments": {"data": "' + "a{b}c" * 100 + '"}}', "", {"data": "a{b}c" * 100}),
    ("tabs and braces", '{"name": "test", "arguments": {"code": "\\tif (true) {\\n\\t\\treturn;\\n\\t}"}}', "", {"code": "\tif (true) {\n\t\treturn;\n\t}"}),
    ("a NUL in a string", '{"name": "test", "arguments": {"data": "before\\u0000{after}"}}', "", {"data": "before\x00{after}"}),
    ("an escaped quote ending a string", '{"name": "test", "arguments": {"data": "text with quote at end\\\\\\""}}', "", {"data": 'text with quote at end\\"'}),
    ("a list of strings and objects", '{"name": "test", "arguments": {"items": ["{", "}", {"key": "value"}]}}', "", {"items": ["{", "}", {"key": "value"}]}),
    ("arguments as a JSON string", '{"name": "get_temperature", "arguments": "{\\"format\\": \\"fahrenheit\\", \\"location\\": \\"San Francisco, CA\\"}"}', "", SF_F),
    ("parameters as a JSON string", '{"name": "get_temperature", "parameters": "{\\"format\\": \\"fahrenheit\\", \\"location\\": \\"San Francisco, CA\\"}"}', "", SF_F),
    ("the tool's name as the key", '{"get_temperature": {"format": "fahrenheit", "location": "San Francisco, CA"}}', "get_temperature", SF_F),
    ("the tool's name as the key, a JSON string", '{"get_temperature": "{\\"format\\": \\"fahrenheit\\", \\"location\\": \\"San Francisco, CA\\"}"}', "get_temperature", SF_F),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "buffer", "tool", "want"), ARGUMENTS, ids=[c[0] for c in ARGUMENTS]
)
def test_find_arguments(case: str, buffer: str, tool: str, want: dict[str, Any] | None) -> None:
    assert find_arguments(tool, buffer)[0] == want


def test_go_json_rules_for_arguments() -> None:
    """What Go's decoder refuses is no call (NaN is not JSON); a lone surrogate escape is
    U+FFFD, as Go decodes it."""
    assert find_arguments("f", '{"name": "f", "arguments": {"x": NaN}}') == (None, 0)
    assert find_arguments("f", '{"name": "f", "arguments": {"x": "\\ud800"}}')[0] == {"x": "\ufffd"}


def test_command_r_calls_name_the_tool_with_tool_name() -> None:
    """mfc's addition: Command-R's template writes `tool_name`/`parameters`."""
    parser = ToolCallParser(TOOLS, tag="Action: ```json\n[")
    out = 'Action: ```json\n[\n    {\n        "tool_name": "add",\n        "parameters": {"a": "1"}\n    }\n]```'
    content, calls = parser.feed(out)
    assert content == "" and [(c.name, c.arguments) for c in calls] == [("add", {"a": "1"})]


def test_calls_get_ids_and_indexes() -> None:
    parser = ToolCallParser(TOOLS, TEMPLATES["qwen"])
    _, calls = parser.feed(
        '<tool_call>{"name": "add", "arguments": {}}</tool_call><tool_call>{"name": "add", "arguments": {}}'
    )
    assert [c.index for c in calls] == [0, 1]
    assert all(c.id.startswith("call_") and len(c.id) == 13 for c in calls)
    assert calls[0].id != calls[1].id
    assert calls[0].to_ollama() == {
        "id": calls[0].id,
        "function": {"index": 0, "name": "add", "arguments": {}},
    }


def test_text_first_with_a_json_tag_is_all_content_even_at_the_end() -> None:
    parser = ToolCallParser(TOOLS, TEMPLATES["json"])
    assert parser.feed("Sure: {") == ("Sure: {", [])
    assert parser.feed('"name": "add"}') == ('"name": "add"}', [])
    assert parser.flush() == ""  # nothing held back twice


def test_streamed_bare_json_calls_one_after_another() -> None:
    """Two bare-JSON calls streamed in small pieces are two calls (the reference, which
    keeps each call's closing brace, gives the second one back as text)."""
    out = '{"name": "add", "arguments": {"a": "1"}}{"name": "say_hello", "arguments": {}}'
    for step in (1, 3, 7):
        parser = ToolCallParser(TOOLS, TEMPLATES["json"])
        content = ""
        calls = []
        for i in range(0, len(out), step):
            text, found = parser.feed(out[i : i + step])
            content += text
            calls += found
        assert content + parser.flush() == ""
        assert [(c.name, c.arguments) for c in calls] == [("add", {"a": "1"}), ("say_hello", {})]


@pytest.mark.parametrize(
    ("case", "buffer", "tool", "want"), ARGUMENTS, ids=[c[0] for c in ARGUMENTS]
)
def test_find_arguments_as_the_buffer_grows(case: str, buffer: str, tool: str, want: Any) -> None:
    """The parser scans a growing buffer once (escapes split across chunks included): the
    answer for each prefix is the answer of a fresh scan of that prefix."""
    scan = FirstObject()
    for n in range(len(buffer) + 1):
        assert arguments_of(tool, scan.find(buffer[:n])) == find_arguments(tool, buffer[:n])
    assert arguments_of(tool, scan.find(buffer))[0] == want
