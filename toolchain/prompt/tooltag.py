"""The text that opens a tool call, read from a template's parse tree as the reference does.

A template shows how a model writes a call in the branch that renders an assistant's
`.ToolCalls`. The tag is the first non-blank text the first such branch prints (before any
`{`), e.g. `<tool_call>` for Qwen/Hermes-style templates, `[TOOL_CALLS] [` for Mistral's;
`{` means calls are bare JSON objects. The walk follows the reference's rules exactly (its
`tools/template.go`): the first `if`/`else if` whose pipeline has a `.ToolCalls` field
argument, anywhere in the main tree (inside `range`/`with`/`if` bodies and else branches);
below it, text is looked for depth-first, and an action, or a nested block without text,
ends the search.
"""

from __future__ import annotations

from toolchain.gotemplate import Template, TemplateError, parse
from toolchain.gotemplate.nodes import (
    ActionNode,
    BranchNode,
    FieldNode,
    IfNode,
    ListNode,
    Node,
    RangeNode,
    TextNode,
    WithNode,
)

#: What Go's unicode.IsSpace accepts (strings.TrimSpace / bytes.TrimSpace trim these).
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501

#: The tag when a template shows no text before its calls: every JSON object may be one.
BARE_JSON = "{"


def go_trim_space(s: str) -> str:
    return s.strip(GO_SPACE)


def tool_call_tag(template: Template | None) -> str:
    """The tool-call tag of a parsed template (`{` when it has none)."""
    root = template.root if template is not None else None
    if root is None:
        return BARE_JSON
    branch = _tool_calls_if(root.nodes)
    if branch is None or branch.list is None:
        return BARE_JSON
    text = _first_text(branch.list.nodes)
    if text is None:
        return BARE_JSON
    tag = text.text.replace("\r\n", "\n").split("{", 1)[0]
    return go_trim_space(tag) or BARE_JSON


def tool_call_tag_of_source(source: str | None) -> str:
    """`tool_call_tag` of template text; `{` for no template or one that does not parse."""
    if not source:
        return BARE_JSON
    try:
        return tool_call_tag(parse(source))
    except TemplateError:
        return BARE_JSON


def _tests_tool_calls(n: IfNode) -> bool:
    """Whether a command of the condition has a field argument naming `ToolCalls`."""
    if n.pipe is None:
        return False
    return any(
        isinstance(arg, FieldNode) and "ToolCalls" in arg.ident
        for cmd in n.pipe.cmds
        for arg in cmd.args
    )


def _bodies(n: BranchNode) -> list[ListNode]:
    return [lst for lst in (n.list, n.else_list) if lst is not None]


def _tool_calls_if(nodes: list[Node]) -> IfNode | None:
    for n in nodes:
        if isinstance(n, IfNode) and _tests_tool_calls(n):
            return n
        if isinstance(n, IfNode | RangeNode | WithNode):
            for body in _bodies(n):
                found = _tool_calls_if(body.nodes)
                if found is not None:
                    return found
        elif isinstance(n, ListNode):
            found = _tool_calls_if(n.nodes)
            if found is not None:
                return found
    return None


def _first_text(nodes: list[Node]) -> TextNode | None:
    """The first non-blank text, depth first; None at the first action or at a nested
    block that has no text (so text after a call's own output is never taken)."""
    for n in nodes:
        if isinstance(n, TextNode):
            if go_trim_space(n.text):
                return n
        elif isinstance(n, IfNode | RangeNode | WithNode):
            for body in _bodies(n):
                found = _first_text(body.nodes)
                if found is not None:
                    return found
            return None
        elif isinstance(n, ListNode):
            found = _first_text(n.nodes)
            if found is not None:
                return found
        elif isinstance(n, ActionNode):
            return None
    return None
