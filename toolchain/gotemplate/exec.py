"""Execution state of a compiled template, and the rare paths of Go's exec.go semantics.

Sandboxed by construction: the only things a template can reach are map keys, the
declared fields and methods of `GoStruct`/`GoSlice`/`GoMap` values, and the functions in
its function map. Range iterations, output size and template call depth are capped.

`State.node` is Go's `state.node`: the node execution last passed, which error messages
name (`executing "" at <.X.Y>`). Compiled code updates it where Go's `state.at` does, so
errors point where Go's do.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from toolchain.gotemplate.builtins import FuncError
from toolchain.gotemplate.gofmt import quote, value_string
from toolchain.gotemplate.nodes import Node
from toolchain.gotemplate.values import NO_VALUE, GoMap, GoStruct, type_name

if TYPE_CHECKING:
    from toolchain.gotemplate.template import Limits, Template

MISSING: Any = object()  # "no final value" (Go's missingVal)
BREAK: Any = "break"  # what a statement returns to unwind to its range
CONTINUE: Any = "continue"


class ExecError(Exception):
    """An execution error with Go's full message; `node` is where it happened."""

    def __init__(self, message: str, node: Node | None, template: str) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.template = template


class LimitError(ExecError):
    """A sandbox limit (iterations, output size, call depth) was hit."""


class State:
    """One execution: output pieces, variable stack, current node, limit counters."""

    __slots__ = ("calls", "deadline", "depth", "dot_iface", "limits", "max_depth",
                 "max_iterations", "max_output", "node", "out", "size", "steps", "tmpl",
                 "vars")  # fmt: skip

    def __init__(self, tmpl: Template, data: Any, limits: Limits) -> None:
        self.tmpl = tmpl
        self.out: list[str] = []
        self.node: Node | None = None
        # [name, value, iface]: iface = the value sits in an interface{} (for error texts)
        self.vars: list[list[Any]] = [["$", data, False]]
        self.dot_iface = False  # the same for dot
        self.depth = 0
        self.size = 0
        self.steps = 0
        self.max_iterations = limits.max_iterations
        self.max_output = limits.max_output
        self.max_depth = limits.max_depth
        self.calls = 0
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds

    def errorf(self, msg: str, cls: type[ExecError] = ExecError) -> ExecError:
        """Go's state.errorf: the message located at the current node."""
        name = self.tmpl.name
        node = self.node
        if node is None:
            return cls(f"template: {name}: {msg}", None, name)
        location, context = error_context(self.tmpl, node)
        return cls(
            f"template: {location}: executing {quote(name)} at <{context}>: {msg}", node, name
        )

    def error_at(self, node: Node, msg: str, cls: type[ExecError] = ExecError) -> ExecError:
        self.node = node
        return self.errorf(msg, cls)

    def output_exceeded(self, node: Node) -> ExecError:
        return self.error_at(node, f"output exceeds {self.max_output} characters", LimitError)

    def value_exceeded(self, node: Node) -> ExecError:
        return self.error_at(node, f"value exceeds {self.max_output} characters", LimitError)

    def check_time(self, node: Node) -> None:
        """The render's deadline (`Limits.max_seconds`); loops and calls check it."""
        if time.monotonic() > self.deadline:
            raise self.error_at(
                node, f"execution exceeds {self.limits.max_seconds:g} seconds", LimitError
            )

    def var_entry(self, name: str) -> list[Any]:
        """The innermost variable called `name` (Go's varValue)."""
        for v in reversed(self.vars):
            if v[0] == name:
                entry: list[Any] = v
                return entry
        raise self.errorf(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any, iface: bool = False) -> None:
        entry = self.var_entry(name)
        entry[1] = value
        entry[2] = iface


def error_context(tmpl: Template, node: Node) -> tuple[str, str]:
    """Go's Tree.ErrorContext: `name:line:col` (col = 0-based byte column) and node text."""
    tree = node.tree if node.tree is not None else tmpl.tree
    text = tree.text_bytes if tree is not None else b""
    pos = node.pos
    before = text[:pos]
    nl = before.rfind(b"\n")
    col = pos if nl < 0 else pos - (nl + 1)
    line = 1 + before.count(b"\n")
    name = tree.parse_name if tree is not None else tmpl.name
    return f"{name}:{line}:{col}", str(node)


def printed(v: Any) -> str:
    """What an action prints for a value (Go's printValue)."""
    if v is NO_VALUE or v is None:
        return "<no value>"
    if type(v) is str:
        return v
    if isinstance(v, GoStruct) and v.go_pointer and v.go_string() is None:
        return "<nil>" if v.go_is_nil() else value_string(v)[1:]
    return value_string(v)


def validate(st: State, value: Any, kind: str | None) -> Any:
    """Go's validateType for one parameter kind."""
    if kind == "any":
        return None if value is NO_VALUE else value
    if kind == "string":
        if value is NO_VALUE:
            raise st.errorf("invalid value; expected string")
        if type(value) is not str:
            got = "interface {}" if value is None else type_name(value)
            raise st.errorf(f"wrong type for value; expected string; got {got}")
    return value


def field_slow(  # noqa: PLR0917
    st: State, name: str, node: Node, args: list[Node] | None, final: Any, receiver: Any,
    iface: bool, plain_attr: set[type],
) -> Any:  # fmt: skip
    """Go's evalField for every case; records struct types whose `name` is a plain field."""
    if receiver is NO_VALUE:
        if st.tmpl.missingkey == "error":
            raise st.errorf(f"nil data; no entry for key {quote(name)}")
        return NO_VALUE
    if receiver is None:
        raise st.errorf(f"nil pointer evaluating interface {{}}.{name}")
    has_args = (args is not None and len(args) > 1) or final is not MISSING
    if type(receiver) is dict:  # map[string]interface {}
        if has_args:
            raise st.errorf(f"{name} is not a method but has arguments")
        if name in receiver:
            return receiver[name]
        return missing_key(st, name, None)
    methods = getattr(type(receiver), "go_methods", None)
    if methods and name in methods:
        return call_method(st, methods[name], node, name, args, final, receiver)
    if isinstance(receiver, GoStruct):
        if name in receiver.go_fields:
            if has_args:
                raise st.errorf(f"{name} has arguments but cannot be invoked as function")
            plain_attr.add(type(receiver))
            return getattr(receiver, name)
    elif isinstance(receiver, dict):
        if has_args:
            raise st.errorf(f"{name} is not a method but has arguments")
        if name in receiver:
            return receiver[name]
        return missing_key(st, name, receiver.zero() if isinstance(receiver, GoMap) else None)
    where = "interface {}" if iface else type_name(receiver)
    raise st.errorf(f"can't evaluate field {name} in type {where}")


def missing_key(st: State, name: str, zero: Any) -> Any:
    mode = st.tmpl.missingkey
    if mode == "zero":
        return zero
    if mode == "error":
        raise st.errorf(f"map has no entry for key {quote(name)}")
    return NO_VALUE


def call_method(  # noqa: PLR0917
    st: State, method: Any, node: Node, name: str, args: list[Node] | None, final: Any,
    receiver: Any,
) -> Any:  # fmt: skip
    """A declared niladic method (Go's evalCall on a method value)."""
    num_in = (len(args) - 1 if args else 0) + (final is not MISSING)
    if num_in != 0:
        raise st.errorf(f"wrong number of args for {name}: want 0 got {num_in}")
    try:
        return method(receiver)
    except FuncError as exc:
        raise st.error_at(node, f"error calling {name}: {exc}") from None


def holds_iface(holder: Any) -> bool:
    """Whether a value looked up in `holder` sits in an interface{} (for error texts)."""
    return isinstance(holder, dict) and getattr(holder, "elem_iface", True)
