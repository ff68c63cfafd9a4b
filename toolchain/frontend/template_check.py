"""TEMPLATE checks for `mfc check` (owned by the Go template engine).

`check_modelfile` calls `check_templates` and merges its diagnostics with its own: every
TEMPLATE is parsed as Ollama parses it (Go's text/template with its function map); a
parse error is reported at the Modelfile line:col where it is, and fields the template
data does not have (`.Promt`) are warned about with the closest real name. Each template is
then rendered once against a small sample conversation under `CHECK_LIMITS`: one that runs
out of time, template calls, loop iterations or output there (definitions that fan out,
a value doubled in a loop) would do the same on every request, so it is an error.
"""

from __future__ import annotations

import difflib

from toolchain.diagnostics import Diagnostic
from toolchain.errors import MfcError, Span
from toolchain.gotemplate import Limits, TemplateError
from toolchain.gotemplate.nodes import (
    ActionNode,
    BranchNode,
    ChainNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    TemplateNode,
    VariableNode,
)
from toolchain.gotemplate.template import locate
from toolchain.ir import Instruction, Modelfile, Template
from toolchain.prompt import PromptTemplate, parse_prompt_template, render_prompt

#: every field name the template data model has (top level, messages, tools, tool calls)
KNOWN_FIELDS = frozenset({
    "System", "Prompt", "Response", "Messages", "Tools", "Suffix", "Think", "ThinkLevel",
    "IsThinkSet", "Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID",
    "ID", "Function", "Index", "Name", "Arguments", "Type", "Items", "Description", "Parameters",
    "Defs", "Required", "Properties", "AnyOf", "Enum", "String", "ToTypeScriptType",
})  # fmt: skip
#: fields holding maps or free-form JSON: what follows them are user keys, not fields
MAP_FIELDS = frozenset({"Arguments", "Properties", "Items", "Defs", "Enum"})

#: the budget of the sample render (the server's own limits, a shorter deadline)
CHECK_LIMITS = Limits(max_seconds=5.0)
_SAMPLE_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "22 degrees", "tool_name": "get_weather"},
    {"role": "assistant", "content": "It is 22 degrees in Paris."},
    {"role": "user", "content": "Thanks!"},
]  # fmt: skip
_CITY = {"type": "string", "description": "A city"}
_SAMPLE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "required": ["city"], "properties": {"city": _CITY}},
        },
    }
]


def check_templates(mf: Modelfile) -> list[Diagnostic]:
    """Diagnostics for every TEMPLATE of `mf` (parse errors at Modelfile positions)."""
    out: list[Diagnostic] = []
    for ins in mf.instructions:
        if isinstance(ins, Template):
            out += check_template_text(ins.value, ins)
    return out


def check_template_text(text: str, ins: Instruction | None = None) -> list[Diagnostic]:
    """Diagnostics for one template's text; `ins` maps positions into the Modelfile."""
    try:
        pt = parse_prompt_template(text)
    except TemplateError as err:
        span = _map(ins, err.line, err.col)
        return [Diagnostic("error", err.message, span,
                           "TEMPLATE is a Go text/template: check the {{ ... }} action here")]  # fmt: skip  # noqa: E501
    diags: list[Diagnostic] = []
    for t in pt.template.templates():
        if t.root is not None:
            _walk(t.root, True, text, ins, diags)
    limit = sample_render_limit(pt)
    if limit is not None:
        diags.append(Diagnostic("error", f"template exceeds a render limit: {limit.message}",
                                _map(ins, limit.line, limit.col),
                                "a render that needs this much work would fail on every request"))  # fmt: skip  # noqa: E501
    return diags


def sample_render_limit(pt: PromptTemplate) -> TemplateError | None:
    """The limit error a sample chat render (with tools) hits, or None; other render
    errors depend on the request and are not reported."""
    for kwargs in ({"messages": _SAMPLE_MESSAGES, "tools": _SAMPLE_TOOLS},
                   {"prompt": "Hello", "system": "You are a helpful assistant."}):  # fmt: skip
        try:
            render_prompt(pt, limits=CHECK_LIMITS, **kwargs)
        except TemplateError as err:
            if err.kind == "limit":
                return err
        except MfcError:
            pass
    return None


def _walk(n: Node | None, dot_known: bool, text: str, ins: Instruction | None,
          diags: list[Diagnostic]) -> None:  # fmt: skip
    if n is None:
        return
    if isinstance(n, ListNode):
        for c in n.nodes:
            _walk(c, dot_known, text, ins, diags)
    elif isinstance(n, ActionNode | TemplateNode):
        _walk(n.pipe, dot_known, text, ins, diags)
    elif isinstance(n, BranchNode):
        _walk(n.pipe, dot_known, text, ins, diags)
        inner = dot_known
        if n.keyword in ("range", "with") and n.pipe is not None:
            inner = _yields_known(n.pipe)
        _walk(n.list, inner, text, ins, diags)
        _walk(n.else_list, dot_known, text, ins, diags)
    elif isinstance(n, PipeNode):
        for c in n.cmds:
            for a in c.args:
                _walk(a, dot_known, text, ins, diags)
    elif isinstance(n, FieldNode) and dot_known:
        _check_chain(n, n.ident, text, ins, diags)
    elif isinstance(n, VariableNode) and n.ident[0] == "$":
        _check_chain(n, n.ident[1:], text, ins, diags)
    elif isinstance(n, ChainNode):
        _walk(n.node, dot_known, text, ins, diags)


def _yields_known(pipe: PipeNode) -> bool:
    """Whether range/with over this pipeline gives a dot of a known type."""
    last = pipe.cmds[-1].args[0] if pipe.cmds else None
    if isinstance(last, FieldNode | VariableNode):
        idents = last.ident if isinstance(last, FieldNode) else last.ident[1:]
        return not any(i in MAP_FIELDS for i in idents) and last.ident[0] in ("$", *KNOWN_FIELDS)
    return False


def _check_chain(node: Node, idents: list[str], text: str, ins: Instruction | None,
                 diags: list[Diagnostic]) -> None:  # fmt: skip
    for ident in idents:
        if ident not in KNOWN_FIELDS:
            close = difflib.get_close_matches(ident, sorted(KNOWN_FIELDS), n=1, cutoff=0.6)
            hint = f"did you mean .{close[0]}?" if close else (
                "the template data has: " + ", ".join(sorted(KNOWN_FIELDS)[:8]) + ", ..."
            )  # fmt: skip
            line, col = locate(text, node.pos)
            diags.append(Diagnostic("warning", f"unknown field .{ident}: the template data has no "
                                    f"such field, it renders as <no value> or fails",
                                    _map(ins, line, col), hint))  # fmt: skip
            return
        if ident in MAP_FIELDS:
            return


def _map(ins: Instruction | None, line: int | None, col: int | None) -> Span | None:
    """Template line:col -> Modelfile span through the TEMPLATE value's span."""
    if ins is None:
        return None
    base = ins.value_span or ins.span
    if line is None or col is None or ins.value_span is None:
        return base
    mline = base.line + line - 1
    mcol = base.col + col - 1 if line == 1 else col
    return Span(base.file, mline, mcol, mline, mcol + 1)
