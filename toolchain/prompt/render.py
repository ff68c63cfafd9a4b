"""Ollama's prompt rendering: Parse (auto `{{ .Response }}`), Vars, collate, the three
execute paths (suffix, messages, legacy turn-by-turn with the cut after `.Response`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from toolchain.gotemplate import GoSlice, Template, TemplateError, parse
from toolchain.gotemplate.nodes import (
    ActionNode,
    BranchNode,
    CommandNode,
    FieldNode,
    ListNode,
    Node,
    PipeNode,
    TemplateNode,
    VariableNode,
)
from toolchain.gotemplate.template import DEFAULT_LIMITS, Limits
from toolchain.prompt.data import (
    RequestError,
    TemplateMessage,
    TemplateTools,
    message_from_json,
    tools_from_json,
)


def identifiers(n: Node | None) -> list[str]:
    """Ollama's Identifiers: field and variable names used in actions and branches."""
    if n is None:
        return []
    if isinstance(n, ListNode):
        return [i for c in n.nodes for i in identifiers(c)]
    if isinstance(n, TemplateNode):
        if n.pipe is None:
            raise TemplateError("undefined template specified", "parse")
        return identifiers(n.pipe)
    if isinstance(n, ActionNode):
        if n.pipe is None:
            raise TemplateError("undefined action in template", "parse")
        return identifiers(n.pipe)
    if isinstance(n, BranchNode):
        if n.pipe is None:
            raise TemplateError("undefined branch", "parse")
        return identifiers(n.pipe) + identifiers(n.list) + identifiers(n.else_list)
    if isinstance(n, PipeNode):
        return [i for c in n.cmds for a in c.args for i in identifiers(a)]
    if isinstance(n, (FieldNode, VariableNode)):
        return list(n.ident)
    return []


def template_vars(tmpl: Template) -> list[str]:
    """Ollama's Template.Vars(): identifiers of every template in the set, lower-cased, sorted."""
    names: set[str] = set()
    for t in tmpl.templates():
        if t.root is not None:
            for node in t.root.nodes:
                names.update(i.lower() for i in identifiers(node))
    return sorted(names)


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A model's template, parsed the way the reference's template.Parse does."""

    source: str
    template: Template  # with `{{ .Response }}` appended when the source has neither
    vars: tuple[str, ...] = field(default=())


def _response_node() -> ActionNode:
    field_node = FieldNode(0, None, ["Response"])
    return ActionNode(0, None, 0, PipeNode(0, None, 0, cmds=[CommandNode(0, None, [field_node])]))


@functools.lru_cache(maxsize=256)
def parse_prompt_template(source: str) -> PromptTemplate:
    """Parse a TEMPLATE as Ollama's template.Parse: Go errors, Vars check, auto Response."""
    tmpl = parse(source)
    found = template_vars(tmpl)
    if "messages" not in found and "response" not in found:
        assert tmpl.root is not None
        root = ListNode(tmpl.root.pos, tmpl.root.tree, [*tmpl.root.nodes, _response_node()])
        tmpl = tmpl.with_root(root)
    return PromptTemplate(source, tmpl, tuple(template_vars(tmpl)))


DEFAULT_TEMPLATE = "{{ .Prompt }}"


def collate(messages: list[TemplateMessage]) -> tuple[str, list[TemplateMessage]]:
    """Join all system contents; merge runs of same-role messages (tool messages never)."""
    system: list[str] = []
    out: list[TemplateMessage] = []
    for m in messages:
        if m.Role == "system":
            system.append(m.Content)
        if out and out[-1].Role == m.Role and m.Role != "tool":
            out[-1].Content += "\n\n" + m.Content
        else:
            out.append(m)
    return "\n\n".join(system), out


@dataclass(slots=True)
class Values:
    """What Template.Execute receives (Ollama's template.Values)."""

    messages: list[TemplateMessage] = field(default_factory=list)
    tools: TemplateTools | None = None
    prompt: str = ""
    suffix: str = ""
    think: bool = False
    think_level: str = ""
    is_think_set: bool = False


def execute(pt: PromptTemplate, v: Values, limits: Limits = DEFAULT_LIMITS) -> str:
    """Template.Execute: the suffix, messages or legacy path, exactly as the reference."""
    system, msgs = collate(v.messages)
    think = {"Think": v.think, "ThinkLevel": v.think_level, "IsThinkSet": v.is_think_set}
    if v.prompt and v.suffix:
        data = {"Prompt": v.prompt, "Suffix": v.suffix, "Response": "", **think}
        return pt.template.execute(data, limits)
    if "messages" in pt.vars:
        tmsgs: Any = msgs
        if not v.messages:
            tmsgs = TemplateMessageList()
            tmsgs.is_nil = True
        else:
            tmsgs = TemplateMessageList(msgs)
        tools = v.tools if v.tools is not None else _nil_tools()
        data = {"System": system, "Messages": tmsgs, "Tools": tools, "Response": "", **think}
        return pt.template.execute(data, limits)
    out: list[str] = []
    sys_ = prompt = response = ""
    for m in msgs:
        if m.Role == "system":
            if prompt or response:
                out.append(
                    pt.template.execute(
                        {"System": sys_, "Prompt": prompt, "Response": response, **think}, limits
                    )
                )
                sys_ = prompt = response = ""
            sys_ = m.Content
        elif m.Role == "user":
            if response:
                out.append(
                    pt.template.execute(
                        {"System": sys_, "Prompt": prompt, "Response": response, **think}, limits
                    )
                )
                sys_ = prompt = response = ""
            prompt = m.Content
        elif m.Role == "assistant":
            response = m.Content
    last = _cut_template(pt)
    out.append(
        last.execute({"System": sys_, "Prompt": prompt, "Response": response, **think}, limits)
    )
    return "".join(out)


class TemplateMessageList(GoSlice):
    """[]*template.templateMessage."""

    go_type = "[]*template.templateMessage"


def _nil_tools() -> TemplateTools:
    t = TemplateTools()
    t.is_nil = True
    return t


@functools.lru_cache(maxsize=256)
def _cut_cache(pt: PromptTemplate) -> Template:
    assert pt.template.root is not None
    root = cut_after_response(pt.template.root.copy())
    return pt.template.with_root(root, funcs={}, missingkey="invalid")


def _cut_template(pt: PromptTemplate) -> Template:
    return _cut_cache(pt)


def cut_after_response(root: ListNode) -> ListNode:
    """Drop everything after the first `.Response` field (the reference's deleteNode walk)."""
    cut = False

    def pred(n: Node) -> bool:
        nonlocal cut
        if isinstance(n, FieldNode) and "Response" in n.ident:
            cut = True
            return False
        return cut

    def walk(n: Node) -> Node | None:
        if pred(n):
            return None
        if isinstance(n, ListNode):
            n.nodes = [k for c in n.nodes if (k := walk(c)) is not None]
        elif isinstance(n, BranchNode):
            if pred(n):  # the reference walks the embedded BranchNode as a node of its own
                raise _panic()
            assert n.list is not None
            n.list = walk(n.list)  # type: ignore[assignment]
            if n.else_list is not None:
                kept = walk(n.else_list)
                if kept is None:
                    raise _panic()
                n.else_list = kept  # type: ignore[assignment]
        elif isinstance(n, ActionNode):
            assert n.pipe is not None
            p = walk(n.pipe)
            if p is None:
                return None
        elif isinstance(n, PipeNode):
            cmds = []
            for c in n.cmds:
                args = [k for a in c.args if (k := walk(a)) is not None]
                if not args:
                    return None
                c.args = args
                cmds.append(c)
            n.cmds = cmds
        return n

    kept = walk(root)
    assert isinstance(kept, ListNode)
    return kept


def _panic() -> TemplateError:
    return TemplateError(
        "template: `.Response` inside an if/with/range that has an {{else}} cannot be cut "
        "for the last turn (the reference implementation panics on this template)",
        "exec",
    )


def _think_fields(think: Any) -> tuple[bool, str, bool]:
    if think is None:
        return False, "", False
    if isinstance(think, bool):
        return think, "", True
    if isinstance(think, str):
        return True, think, True
    raise RequestError(f"invalid think value: {think!r} (must be true, false or a level)")


def render_prompt(
    template: str | PromptTemplate | None,
    *,
    messages: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
    system: str | None = None,
    prompt: str | None = None,
    suffix: str | None = None,
    think: bool | str | None = None,
    model_system: str | None = None,
    model_messages: list[dict[str, Any]] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> str:
    """The prompt a request produces with this template (None = the default `{{ .Prompt }}`).

    `messages` given: an /api/chat request (model MESSAGEs first; the model SYSTEM is
    prepended unless the conversation starts with a system message). Otherwise an
    /api/generate request: `suffix` with a non-empty `prompt` takes the fill-in-the-middle
    path; else [system or model SYSTEM] + model MESSAGEs + the user `prompt`.
    """
    pt = (
        template
        if isinstance(template, PromptTemplate)
        else parse_prompt_template(DEFAULT_TEMPLATE if template is None else template)
    )
    is_think, level, is_set = _think_fields(think)
    raw: list[dict[str, Any]] = list(model_messages or [])
    if messages is not None:
        raw += list(messages)
        if model_system and not (messages and str(messages[0].get("role", "")).lower() == "system"):
            raw.insert(0, {"role": "system", "content": model_system})
    else:
        sys_text = system if system else model_system
        if sys_text:
            raw.insert(0, {"role": "system", "content": sys_text})
        if prompt:
            raw.append({"role": "user", "content": prompt})
    values = Values(
        messages=[message_from_json(m) for m in raw],
        tools=tools_from_json(tools) if tools is not None else None,
        prompt=prompt or "",
        suffix=suffix or "",
        think=is_think,
        think_level=level,
        is_think_set=is_set,
    )
    return execute(pt, values, limits)
