"""Tool calls out of generated text, as the reference finds them (streaming too).

The template says how a model writes a call: the text right after `{{ range .ToolCalls }}`
(`<tool_call>` for Qwen/Hermes-style templates) is the tag that starts one; without such
text a call is bare JSON and the tag is `{`. After the tag, JSON objects that name one of
the request's tools and carry `arguments` (or `parameters`) become calls; anything else is
content after all.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from toolchain.gojson import loads, replace_lone_surrogates

_RANGE_TOOLCALLS = re.compile(r"\{\{-?\s*(?:range|if)\s+[^}]*\.ToolCalls\b[^}]*?-?\}\}")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_CLOSING_TAG = re.compile(r"\s*</[^>]*>")


def call_id() -> str:
    """`call_` and 8 characters of [a-z0-9], the reference's tool-call ids."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def tool_tag(template: str | None) -> str:
    """The text that opens a tool call in this template's output (`{` if it has none)."""
    if not template:
        return "{"
    m = _RANGE_TOOLCALLS.search(template)
    if m is None:
        return "{"
    rest = template[m.end() :]
    trim_left = m.group(0).endswith("-}}")
    literal = rest.split("{{", 1)[0]
    if trim_left:
        literal = literal.lstrip()
    literal = literal.split("{", 1)[0].split("[", 1)[0].strip()
    return literal or "{"


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


def _json_values(text: str) -> tuple[list[Any], int, bool]:
    """Complete JSON values at the start of `text` (after whitespace/commas/brackets).

    Returns (values, characters consumed, whether an incomplete value is pending).
    """
    decoder = json.JSONDecoder()
    values: list[Any] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n,[]":
            i += 1
        if i >= len(text):
            return values, i, False
        if text[i] != "{":
            return values, i, False
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return values, i, _unbalanced(text[i:])
        values.append(replace_lone_surrogates(value))  # as Go's decoder would give it
        i = end


def _unbalanced(text: str) -> bool:
    """Whether `text` (starting with `{`) could still become a complete object."""
    depth = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return False
    return depth > 0


class ToolCallParser:
    """Feed generated text; get back (content to show, tool calls found)."""

    def __init__(self, tools: list[dict[str, Any]], template: str | None) -> None:
        self.names = {
            str(t.get("function", {}).get("name", "")) for t in tools if isinstance(t, dict)
        }
        self.tag = tool_tag(template)
        self.buffer = ""
        self.parsing = False
        self.after_call = False
        self.count = 0

    def _call(self, value: Any) -> ToolCall | None:
        if not isinstance(value, dict):
            return None
        if isinstance(value.get("function"), dict):
            value = value["function"]
        name = value.get("name")
        args = value.get("arguments", value.get("parameters"))
        if isinstance(args, str):
            try:
                args = loads(args)
            except json.JSONDecodeError:
                return None
        if name not in self.names or not isinstance(args, dict):
            return None
        call = ToolCall(str(name), args, self.count, call_id())
        self.count += 1
        return call

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.buffer += text
        content = ""
        calls: list[ToolCall] = []
        while True:
            if self.after_call and self.tag != "{":
                # a call's closing tag (`</tool_call>`) is not content
                head = self.buffer.lstrip()
                if not head or ("</".startswith(head[:2]) and ">" not in head):
                    return content, calls
                closing = _CLOSING_TAG.match(self.buffer)
                if closing:
                    self.buffer = self.buffer[closing.end() :]
                self.after_call = False
            if not self.parsing:
                at = self.buffer.find(self.tag)
                if at < 0:
                    cut = len(self.buffer) - _overlap(self.buffer, self.tag)
                    content += self.buffer[:cut]
                    self.buffer = self.buffer[cut:]
                    return content, calls
                content += self.buffer[:at]
                self.buffer = self.buffer[at:]
                self.parsing = True
            body = self.buffer if self.tag == "{" else self.buffer[len(self.tag) :]
            values, used, pending = _json_values(body)
            found = [c for c in (self._call(v) for v in values) if c is not None]
            if found:
                calls += found
                rest = body[used:]
                closing = _CLOSING_TAG.match(rest)
                self.buffer = rest[closing.end() :] if closing else rest
                self.after_call = closing is None
                self.parsing = False
                if not self.buffer:
                    return content, calls
                continue
            if pending or (not values and not body.strip()):
                return content, calls  # wait for the rest of the call
            content += self.buffer  # not a tool call after all
            self.buffer = ""
            self.parsing = False
            return content, calls

    def flush(self) -> str:
        """What is left when generation ends (a tag with nothing usable after it is content)."""
        rest, self.buffer = self.buffer, ""
        if self.count and rest.strip() in ("", self.tag):
            return ""
        return rest


def _overlap(s: str, tag: str) -> int:
    """Length of the longest suffix of `s` that is a proper prefix of `tag`."""
    for n in range(min(len(tag) - 1, len(s)), 0, -1):
        if s.endswith(tag[:n]):
            return n
    return 0
