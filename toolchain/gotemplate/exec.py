"""The evaluator: Go's exec.go semantics over our parse tree and value model.

Sandboxed by construction: the only things a template can reach are map keys, the
declared fields and methods of `GoStruct`/`GoSlice`/`GoMap` values, and the functions in
its function map. Range iterations, output size and template call depth are capped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolchain.gotemplate import builtins as bi
from toolchain.gotemplate.gofmt import quote, value_string
from toolchain.gotemplate.nodes import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
)
from toolchain.gotemplate.printf import Flags, format_arg
from toolchain.gotemplate.values import NO_VALUE, GoMap, GoStruct, GoUint8, kind, type_name

if TYPE_CHECKING:
    from toolchain.gotemplate.template import Limits, Template

MISSING: Any = object()  # "no final value" (Go's missingVal)


class ExecError(Exception):
    """An execution error with Go's full message; `node` is where it happened."""

    def __init__(self, message: str, node: Node | None, template: str) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.template = template


class LimitError(ExecError):
    """A sandbox limit (iterations, output size, call depth) was hit."""


class _Break(Exception):  # noqa: N818
    pass


class _Continue(Exception):  # noqa: N818
    pass


class State:
    __slots__ = ("depth", "dot_iface", "limits", "node", "out", "size", "steps", "tmpl", "vars")

    def __init__(self, tmpl: Template, data: Any, limits: Limits) -> None:
        self.tmpl = tmpl
        self.out: list[str] = []
        self.node: Node | None = None
        # [name, value, iface]: iface = the value sits in an interface{} (for error texts)
        self.vars: list[list[Any]] = [["$", data, False]]
        self.dot_iface = False
        self.depth = 0
        self.limits = limits
        self.size = 0
        self.steps = 0

    # -- errors ------------------------------------------------------------------------
    def errorf(self, msg: str, cls: type[ExecError] = ExecError) -> ExecError:
        name = self.tmpl.name
        node = self.node
        if node is None:
            return cls(f"template: {name}: {msg}", None, name)
        location, context = error_context(self.tmpl, node)
        return cls(
            f"template: {location}: executing {quote(name)} at <{context}>: {msg}", node, name
        )

    # -- variables ---------------------------------------------------------------------
    def set_var(self, name: str, value: Any, iface: bool = False) -> None:
        for v in reversed(self.vars):
            if v[0] == name:
                v[1] = value
                v[2] = iface
                return
        raise self.errorf(f"undefined variable: {name}")

    def var_entry(self, name: str) -> list[Any]:
        for v in reversed(self.vars):
            if v[0] == name:
                entry: list[Any] = v
                return entry
        raise self.errorf(f"undefined variable: {name}")

    def write(self, s: str) -> None:
        self.size += len(s)
        if self.size > self.limits.max_output:
            raise self.errorf(f"output exceeds {self.limits.max_output} characters", LimitError)
        self.out.append(s)

    # -- walking -----------------------------------------------------------------------
    def walk(self, dot: Any, node: Node) -> None:
        self.node = node
        t = type(node)
        if t is TextNode:
            self.write(node.text)  # type: ignore[attr-defined]
        elif t is ActionNode:
            assert isinstance(node, ActionNode) and node.pipe is not None
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif t is ListNode:
            for n in node.nodes:  # type: ignore[attr-defined]
                self.walk(dot, n)
        elif t is IfNode or t is WithNode:
            assert isinstance(node, BranchNode)
            self.walk_if_or_with(t is WithNode, dot, node)
        elif t is RangeNode:
            assert isinstance(node, RangeNode)
            self.walk_range(dot, node)
        elif t is TemplateNode:
            assert isinstance(node, TemplateNode)
            self.walk_template(dot, node)
        elif t is BreakNode:
            raise _Break
        elif t is ContinueNode:
            raise _Continue
        elif t is not CommentNode:
            raise self.errorf(f"unknown node: {node}")

    def walk_if_or_with(self, is_with: bool, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            assert node.pipe is not None and node.list is not None
            val = self.eval_pipeline(dot, node.pipe)
            if kind(val) == "func":
                raise self.errorf(f"if/with can't use {value_string(val)}")
            if bi.truth(val):
                if is_with:
                    saved, self.dot_iface = self.dot_iface, False
                    try:
                        self.walk(val, node.list)
                    finally:
                        self.dot_iface = saved
                else:
                    self.walk(dot, node.list)
            elif node.else_list is not None:
                self.walk(dot, node.else_list)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, r: RangeNode) -> None:
        self.node = r
        mark0 = len(self.vars)
        try:
            assert r.pipe is not None and r.list is not None
            val = self.eval_pipeline(dot, r.pipe)
            mark = len(self.vars)
            decl, assign = r.pipe.decl, r.pipe.is_assign
            limits = self.limits
            iface = type(val) is list or type(val) is dict
            saved_iface = self.dot_iface

            def one(index: Any, elem: Any) -> None:
                self.steps += 1
                if self.steps > limits.max_iterations:
                    self.node = r
                    raise self.errorf(
                        f"range iterations exceed {limits.max_iterations}", LimitError
                    )
                if decl:
                    if assign:
                        if len(decl) > 1:
                            self.set_var(decl[0].ident[0], index)
                        else:
                            self.set_var(decl[0].ident[0], elem, iface)
                    else:
                        self.vars[-1][1:] = [elem, iface]
                if len(decl) > 1:
                    if assign:
                        self.set_var(decl[1].ident[0], elem, iface)
                    else:
                        self.vars[-2][1:] = [index, False]
                self.dot_iface = iface
                try:
                    self.walk(elem, r.list)  # type: ignore[arg-type]
                except _Continue:
                    pass
                finally:
                    del self.vars[mark:]
                    self.dot_iface = saved_iface

            try:
                if self._range_over(val, r, one):
                    return
            except _Break:
                return
            if r.else_list is not None:
                self.walk(dot, r.else_list)
        finally:
            del self.vars[mark0:]

    def _range_over(self, val: Any, r: RangeNode, one: Any) -> bool:
        """Run the iterations; False when the else branch should run instead."""
        if isinstance(val, (list, bytes)):
            if not val:
                return False
            wrap = isinstance(val, bytes)
            for i, e in enumerate(val):
                one(i, GoUint8(e) if wrap else e)
            return True
        if isinstance(val, dict):
            if not val:
                return False
            for k in sorted(val, key=lambda k: k.encode("utf-8", "surrogateescape")):
                one(k, val[k])
            return True
        if val is NO_VALUE:
            return False
        if type(val) is int or type(val) is GoUint8:
            assert r.pipe is not None
            if len(r.pipe.decl) > 1:
                raise self.errorf(
                    f"can't use {value_string(val)} to iterate over more than one variable"
                )
            for i in range(int(val)):
                one(NO_VALUE, type(val)(i))
            return int(val) > 0
        raise self.errorf(f"range can't iterate over {value_string(val)}")

    def walk_template(self, dot: Any, t: TemplateNode) -> None:
        self.node = t
        tmpl = self.tmpl.lookup(t.name)
        if tmpl is None:
            raise self.errorf(f"template {quote(t.name)} not defined")
        if self.depth >= self.limits.max_depth:
            raise self.errorf(
                f"exceeded maximum template depth ({self.limits.max_depth})", LimitError
            )
        dot = self.eval_pipeline(dot, t.pipe)
        saved = (self.tmpl, self.vars, self.depth, self.dot_iface)
        self.tmpl, self.vars, self.depth = tmpl, [["$", dot, False]], self.depth + 1
        self.dot_iface = False
        try:
            assert tmpl.root is not None
            self.walk(dot, tmpl.root)
        finally:
            self.tmpl, self.vars, self.depth, self.dot_iface = saved

    # -- evaluation --------------------------------------------------------------------
    def eval_pipeline(self, dot: Any, pipe: PipeNode | None) -> Any:
        if pipe is None:
            return NO_VALUE
        self.node = pipe
        value = MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
            if value is None:
                value = NO_VALUE
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.ident[0], value)
            else:
                self.vars.append([var.ident[0], value, False])
        return value

    def not_a_function(self, args: list[Node] | None, final: Any) -> None:
        if args and (len(args) > 1 or final is not MISSING):
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        t = type(first)
        if t is FieldNode:
            self.node = first
            idents = first.ident  # type: ignore[attr-defined]
            return self.eval_field_chain(dot, dot, first, idents, cmd.args, final, self.dot_iface)
        if t is ChainNode:
            return self.eval_chain(dot, first, cmd.args, final)  # type: ignore[arg-type]
        if t is IdentifierNode:
            return self.eval_function(dot, first, cmd, cmd.args, final)  # type: ignore[arg-type]
        if t is PipeNode:
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)  # type: ignore[arg-type]
        if t is VariableNode:
            return self.eval_variable(dot, first, cmd.args, final)  # type: ignore[arg-type]
        self.node = first
        self.not_a_function(cmd.args, final)
        if t is BoolNode:
            return first.value  # type: ignore[attr-defined]
        if t is DotNode:
            return dot
        if t is NilNode:
            raise self.errorf("nil is not a command")
        if t is NumberNode:
            return self.ideal_constant(first)  # type: ignore[arg-type]
        if t is StringNode:
            return first.text  # type: ignore[attr-defined]
        raise self.errorf(f"can't evaluate command {quote(str(first))}")

    def ideal_constant(self, c: NumberNode) -> Any:
        self.node = c
        text = c.text
        if c.is_complex:
            return c.complex128
        is_hex_int = (
            len(text) > 2
            and text[0] == "0"
            and text[1] in "xX"
            and not any(p in text for p in "pP")
        )
        if c.is_float and not is_hex_int and text[0] != "'" and any(ch in text for ch in ".eEpP"):
            return c.float64
        if c.is_int:
            return c.int64
        if c.is_uint:
            raise self.errorf(f"{text} overflows int")
        return NO_VALUE

    def eval_chain(self, dot: Any, chain: ChainNode, args: list[Node] | None, final: Any) -> Any:
        self.node = chain
        if isinstance(chain.node, NilNode):
            raise self.errorf(f"indirection through explicit nil in {chain}")
        assert chain.node is not None
        pipe = self.eval_arg(dot, None, chain.node)
        return self.eval_field_chain(dot, pipe, chain, chain.fields, args, final, False)

    def eval_variable(self, dot: Any, v: VariableNode, args: list[Node] | None, final: Any) -> Any:
        self.node = v
        entry = self.var_entry(v.ident[0])
        if len(v.ident) == 1:
            self.not_a_function(args, final)
            return entry[1]
        return self.eval_field_chain(dot, entry[1], v, v.ident[1:], args, final, entry[2])

    def eval_field_chain(  # noqa: PLR0917
        self, dot: Any, receiver: Any, node: Node, ident: list[str], args: list[Node] | None,
        final: Any, iface: bool,
    ) -> Any:  # fmt: skip
        n = len(ident)
        for i in range(n - 1):
            holder = receiver
            receiver = self.eval_field(dot, ident[i], node, None, MISSING, receiver, iface)
            iface = isinstance(holder, dict) and getattr(holder, "elem_iface", True)
        return self.eval_field(dot, ident[n - 1], node, args, final, receiver, iface)

    def eval_field(  # noqa: PLR0917
        self, dot: Any, name: str, node: Node, args: list[Node] | None, final: Any, receiver: Any,
        iface: bool = False,
    ) -> Any:  # fmt: skip
        if receiver is NO_VALUE:
            if self.tmpl.missingkey == "error":
                raise self.errorf(f"nil data; no entry for key {quote(name)}")
            return NO_VALUE
        if receiver is None:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        has_args = (args is not None and len(args) > 1) or final is not MISSING
        if type(receiver) is dict:  # the common case: map[string]interface {}
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            return self._missing_key(name, None)
        methods = getattr(type(receiver), "go_methods", None)
        if methods and name in methods:
            method = bi.GoFunc(methods[name], ())
            return self.eval_call(dot, method, False, node, name, args, final, receiver)
        if isinstance(receiver, GoStruct):
            if name in receiver.go_fields:
                if has_args:
                    raise self.errorf(f"{name} has arguments but cannot be invoked as function")
                return getattr(receiver, name)
        elif isinstance(receiver, dict):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            return self._missing_key(name, receiver.zero() if isinstance(receiver, GoMap) else None)
        where = "interface {}" if iface else type_name(receiver)
        raise self.errorf(f"can't evaluate field {name} in type {where}")

    def _missing_key(self, name: str, zero: Any) -> Any:
        mode = self.tmpl.missingkey
        if mode == "zero":
            return zero
        if mode == "error":
            raise self.errorf(f"map has no entry for key {quote(name)}")
        return NO_VALUE

    def eval_function(
        self, dot: Any, node: IdentifierNode, cmd: Node, args: list[Node] | None, final: Any
    ) -> Any:
        self.node = node
        name = node.ident
        fn = self.tmpl.funcs.get(name)
        is_builtin = False
        if fn is None:
            fn = bi.BUILTINS.get(name)
            is_builtin = fn is not None
        if fn is None:
            raise self.errorf(f"{quote(name)} is not a defined function")
        return self.eval_call(dot, fn, is_builtin, cmd, name, args, final)

    def eval_call(  # noqa: PLR0917
        self, dot: Any, fn: bi.GoFunc, is_builtin: bool, node: Node, name: str,
        args: list[Node] | None, final: Any, receiver: Any = MISSING,
    ) -> Any:  # fmt: skip
        argn = list(args[1:]) if args else []
        params = fn.params
        num_in = len(argn) + (final is not MISSING)
        if fn.variadic is not None:
            if num_in < len(params):
                raise self.errorf(
                    f"wrong number of args for {name}: want at least {len(params)} got {len(argn)}"
                )
        elif num_in != len(params):
            raise self.errorf(f"wrong number of args for {name}: want {len(params)} got {num_in}")
        if is_builtin and name in ("and", "or"):
            want = name == "or"
            v: Any = NO_VALUE
            for a in argn:
                v = self.eval_arg(dot, "value", a)
                if bi.truth(v) == want:
                    return v
            if final is not MISSING:
                v = final
            return v
        values = [
            self.eval_arg(dot, params[i] if i < len(params) else fn.variadic, a)
            for i, a in enumerate(argn)
        ]
        if final is not MISSING:
            i = num_in - 1
            values.append(self.validate(final, params[i] if i < len(params) else fn.variadic))
        if is_builtin and name == "call":
            callee = _iface(values[0])
            self.node = node
            if callee is NO_VALUE:
                raise self.errorf(f"error calling {name}: call of nil")
            raise self.errorf(
                f"error calling {name}: non-function {argn[0] if argn else '.'} of type {type_name(callee)}"  # noqa: E501
            )
        try:
            return fn.fn(receiver, *values) if receiver is not MISSING else fn.fn(*values)
        except bi.FuncError as exc:
            self.node = node
            raise self.errorf(f"error calling {name}: {exc}") from None

    def validate(self, value: Any, kind: str | None) -> Any:
        """Go's validateType for one parameter kind."""
        if kind == "any":
            return None if value is NO_VALUE else value
        if kind == "string":
            if value is NO_VALUE:
                raise self.errorf("invalid value; expected string")
            if type(value) is not str:
                got = "interface {}" if value is None else type_name(value)
                raise self.errorf(f"wrong type for value; expected string; got {got}")
        return value

    def eval_arg(self, dot: Any, kind: str | None, n: Node) -> Any:
        self.node = n
        t = type(n)
        if t is DotNode:
            return self.validate(dot, kind)
        if t is NilNode:
            if kind == "string":
                raise self.errorf("cannot assign nil to string")
            return None if kind == "any" else NO_VALUE
        if t is FieldNode:
            idents = n.ident  # type: ignore[attr-defined]
            value = self.eval_field_chain(dot, dot, n, idents, [n], MISSING, self.dot_iface)
            return self.validate(value, kind)
        if t is VariableNode:
            return self.validate(self.eval_variable(dot, n, None, MISSING), kind)  # type: ignore[arg-type]
        if t is PipeNode:
            return self.validate(self.eval_pipeline(dot, n), kind)  # type: ignore[arg-type]
        if t is IdentifierNode:
            return self.validate(self.eval_function(dot, n, n, None, MISSING), kind)  # type: ignore[arg-type]
        if t is ChainNode:
            return self.validate(self.eval_chain(dot, n, None, MISSING), kind)  # type: ignore[arg-type]
        if kind == "string":
            if t is StringNode:
                return n.text  # type: ignore[attr-defined]
            raise self.errorf(f"expected string; found {n}")
        if kind is None:
            raise self.errorf(f"can't handle {n} for arg of type <nil>")
        if t is BoolNode:
            return n.value  # type: ignore[attr-defined]
        if t is NumberNode:
            return self.ideal_constant(n)  # type: ignore[arg-type]
        if t is StringNode:
            return n.text  # type: ignore[attr-defined]
        raise self.errorf(f"can't handle assignment of {n} to empty interface argument")

    def print_value(self, node: Node, v: Any) -> None:
        self.node = node
        if v is NO_VALUE or v is None:
            self.write("<no value>")
        elif type(v) is str:
            self.write(v)
        elif isinstance(v, GoStruct) and v.go_pointer and v.go_string() is None:
            self.write(value_string(v)[1:])
        else:
            self.write(value_string(v))


def _iface(v: Any) -> Any:
    return NO_VALUE if v is None else v


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


def format_v(v: Any) -> str:
    return format_arg(v, "v", Flags())
