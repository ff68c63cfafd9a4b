"""Tool calls out of generated text, found the way the reference finds them (streaming too).

The model's template names the tag that opens a call (`toolchain.prompt.tool_call_tag`:
`<tool_call>`, `[TOOL_CALLS] [`, ... or `{` for bare JSON). Text before the tag is content.
After it, each call is a tool name from the request followed by the first complete JSON
object holding its arguments (`{"name": ..., "arguments": {...}}`, `parameters`, arguments
as a JSON string, `{"<tool name>": {...}}`, or the bare arguments object). With a `{` or `[`
tag the calls must come first: an answer that starts with other text is all content, and a
JSON value that closes without naming a tool is given back as content. Anything else after
a tag (closing tags, text after the calls) is not content.

Two changes to the reference: after a call the parser goes on past the call's closing
brace (the reference keeps the brace in its buffer, and streamed bare-JSON calls after the
first one came out as text), and Command-R's `{"tool_name": ..., "parameters": {...}}` (the
call syntax of its template) names the call like `name` does, so its arguments come back
as the template wrote them rather than as the whole object.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from toolchain.gojson import loads
from toolchain.prompt import BARE_JSON, go_trim_space, tool_call_tag_of_source

_ID_ALPHABET = string.ascii_lowercase + string.digits
_NAME_KEYS = ("name", "tool_name")


def call_id() -> str:
    """`call_` and 8 characters of [a-z0-9], the reference's tool-call ids."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    index: int
    id: str

    def to_ollama(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": {"index": self.index, "name": self.name, "arguments": self.arguments},
        }


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"invalid literal {name}", name, 0)  # Go has no NaN/Infinity


def _decode(text: str) -> Any:
    return loads(text, parse_constant=_reject_constant)


def _map_at(obj: dict[str, Any], key: str) -> tuple[dict[str, Any] | None, bool]:
    """`obj[key]` as an arguments map: an object, or a string holding one (JSON `null` in
    the string decodes to no map, as Go's does into a nil map)."""
    value = obj.get(key)
    if isinstance(value, dict):
        return value, True
    if isinstance(value, str):
        try:
            decoded = _decode(value)
        except (json.JSONDecodeError, RecursionError):
            return None, False
        if decoded is None or isinstance(decoded, dict):
            return decoded, True
    return None, False


def _arguments_in(obj: dict[str, Any], tool: str) -> tuple[dict[str, Any] | None, bool]:
    """The arguments an object holds for `tool`, searching nested objects and lists."""
    if any(k in obj for k in _NAME_KEYS):
        for key in ("arguments", "parameters"):
            args, ok = _map_at(obj, key)
            if ok:
                return args, True
        return None, True
    args, ok = _map_at(obj, tool)
    if ok:
        return args, True
    for value in obj.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, dict):
                args, ok = _arguments_in(child, tool)
                if ok:
                    return args, True
    return None, False


class _Scan:
    """The brackets outside JSON strings of a buffer that only grows, each visited once
    however often the buffer is rescanned (a call's arguments stream in many chunks).

    Only structural characters are looked at; a backslash escapes the next character, in
    strings or not, as the reference's scan has it."""

    def __init__(self, brackets: str) -> None:
        self.pattern = re.compile('["\\\\' + re.escape(brackets) + "]")
        self.pos = 0
        self.in_string = False
        self.escaped_at = -1

    def new(self, buffer: str) -> Iterator[tuple[int, str]]:
        """(index, bracket) of the brackets not seen yet."""
        for m in self.pattern.finditer(buffer, self.pos):
            i = m.start()
            self.pos = i + 1
            if i == self.escaped_at:
                continue
            c = buffer[i]
            if c == "\\":
                self.escaped_at = i + 1
            elif c == '"':
                self.in_string = not self.in_string
            elif not self.in_string:
                yield i, c
        self.pos = len(buffer)


class FirstObject:
    """The first complete object of a growing buffer that is valid JSON (a balanced
    `{...}` that is not JSON is skipped)."""

    def __init__(self) -> None:
        self.scan = _Scan("{}")
        self.depth = 0
        self.start = -1
        self.found: tuple[Any, int] | None = None

    def find(self, buffer: str) -> tuple[Any, int] | None:
        """(decoded object, index of its closing brace), or None while there is none."""
        if self.found is not None:
            return self.found
        for i, c in self.scan.new(buffer):
            if c == "{":
                if self.depth == 0:
                    self.start = i
                self.depth += 1
                continue
            self.depth -= 1
            if self.depth == 0 and self.start != -1:
                try:
                    data = _decode(buffer[self.start : i + 1])
                except (json.JSONDecodeError, RecursionError):
                    self.start = -1  # not JSON after all: look further
                    continue
                self.found = (data, i)
                return self.found
            self.depth = max(self.depth, 0)
        return None


class _Balance:
    """Whether a growing buffer holds a complete JSON object (`{` tag) or list (`[`)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.scan = _Scan("{}" if tag == "{" else "[]")
        self.count = 0
        self.closed = False

    def closes(self, buffer: str) -> bool:
        if not self.closed:
            for _, c in self.scan.new(buffer):
                self.count += 1 if c == self.tag else -1
                if self.count == 0 and c != self.tag:
                    self.closed = True
                    break
        return self.closed


def arguments_of(tool: str, found: tuple[Any, int] | None) -> tuple[dict[str, Any] | None, int]:
    """The arguments for `tool` in a found object (the object itself when it names none)."""
    if found is None:
        return None, 0
    data, close = found
    args, ok = _arguments_in(data, tool)
    return (args if ok else data), close


def find_arguments(tool: str, buffer: str) -> tuple[dict[str, Any] | None, int]:
    """The arguments in the first complete JSON object of `buffer`, and the index of the
    object's closing brace; (None, 0) when there is no complete object yet."""
    return arguments_of(tool, FirstObject().find(buffer))


def find_tool(names: list[str], buffer: str) -> tuple[str | None, int]:
    """The tool named earliest in `buffer` (the longest name at one position) and where
    its name ends; none while the buffer ends in what may still grow into a longer name."""
    if not buffer or not names:
        return None, 0
    longest = max(len(n) for n in names)
    for k in range(1, min(len(buffer), longest) + 1):
        tail = buffer[-k:]
        if any(len(tail) < len(n) and n.startswith(tail) for n in names):
            return None, 0
    best: str | None = None
    start = -1
    for name in names:
        pos = buffer.find(name)
        if pos < 0 or (start >= 0 and pos > start):
            continue
        if pos == start and best is not None and len(name) <= len(best):
            continue
        best, start = name, pos
    return (best, start + len(best)) if best is not None else (None, 0)


def find_tag(buffer: str, tag: str) -> tuple[int, bool]:
    """Where the tag starts in `buffer` (found), or where a partial tag at its end starts
    (not found), or -1."""
    at = buffer.find(tag)
    if at >= 0:
        return at, True
    for n in range(min(len(buffer), len(tag)), 0, -1):
        if buffer.endswith(tag[:n]):
            return len(buffer) - n, False
    return -1, False


def closes(buffer: str, tag: str) -> bool:
    """With a `{` or `[` tag: whether the buffer holds a complete object (list)."""
    return tag in (BARE_JSON, "[") and _Balance(tag).closes(buffer)


class _State(Enum):
    LOOKING = 1  # for the tag; text so far is content
    CALLING = 2  # after the tag: calls, nothing else is content
    DONE = 3  # everything from here on is content


class ToolCallParser:
    """Feed generated text; get back (content to show, tool calls found)."""

    def __init__(self, tools: list[dict[str, Any]], template: str | None = None,
                 tag: str | None = None) -> None:  # fmt: skip
        self.names = [
            name
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
            and isinstance(name := t["function"].get("name"), str) and name
        ]  # fmt: skip
        self.tag = tag if tag is not None else tool_call_tag_of_source(template)
        self.state = _State.LOOKING
        self.buffer = ""
        self.count = 0
        self._rescan()

    def _rescan(self) -> None:
        """Forget what was scanned (the buffer no longer just grew)."""
        self._object = FirstObject()
        self._balance = _Balance(self.tag) if self.json_tag else None

    @property
    def json_tag(self) -> bool:
        return self.tag in (BARE_JSON, "[")

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self.state is _State.DONE:
            return text, []
        self.buffer += text
        content = ""
        if self.state is _State.LOOKING:
            at, found = find_tag(self.buffer, self.tag)
            cut = len(self.buffer) if at < 0 else at
            content, self.buffer = self.buffer[:cut], self.buffer[cut:]
            if self.json_tag and go_trim_space(content):
                self.state = _State.DONE  # text first: not a call-only answer
                content, self.buffer = content + self.buffer, ""
                return content, []
            if not found:
                return content, []
            self.state = _State.CALLING
            self._rescan()
        calls: list[ToolCall] = []
        while (call := self._next_call()) is not None:
            calls.append(call)
        if self._balance is not None and self._balance.closes(self.buffer):
            # a complete JSON value that held no (more) calls goes back as content
            self.state = _State.DONE
            content, self.buffer = self.buffer, ""
        return content, calls

    def _next_call(self) -> ToolCall | None:
        name, end = find_tool(self.names, self.buffer)
        if name is None:
            return None
        args, close = arguments_of(name, self._object.find(self.buffer))
        if args is None:
            return None
        call = ToolCall(name, args, self.count, call_id())
        self.count += 1
        # past the object's closing brace (the reference keeps that brace, which then
        # unbalances its `{` count and turns a second streamed JSON call into text)
        self.buffer = self.buffer[max(end, close + 1) :]
        self._rescan()
        return call

    def flush(self) -> str:
        """What is left to show when generation ends: with a `{`/`[` tag and no call, the
        text held back; otherwise nothing."""
        rest, self.buffer = self.buffer, ""
        return rest if self.count == 0 and self.json_tag else ""
