"""A parsed template compiled into Python closures, once, then run for every execution.

The statements here do what Go's exec.go `walk` does for each node (text, actions,
if/with, range, template calls); expressions are compiled in `compile_expr`. What Go
decides from the tree alone is decided here once: which statements can break out of a
range, which blocks declare variables that must be dropped at their end, where each
variable lives on the stack. `break`/`continue` travel as return values (BREAK,
CONTINUE) through the statements between them and their range, not as exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolchain.gotemplate.compile_access import Scope
from toolchain.gotemplate.compile_expr import compile_pipeline
from toolchain.gotemplate.exec import BREAK, CONTINUE, LimitError, State, printed
from toolchain.gotemplate.gofmt import quote, value_string
from toolchain.gotemplate.nodes import (
    ActionNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    IfNode,
    ListNode,
    Node,
    PipeNode,
    RangeNode,
    TemplateNode,
    TextNode,
    WithNode,
)
from toolchain.gotemplate.values import NO_VALUE, GoUint8, is_true, kind

Stmt = Callable[[State, Any], Any]  # (state, dot) -> None, BREAK or CONTINUE
#: name -> (the template to run as, its compiled body), or None when not defined
Resolver = Callable[[str], "tuple[Any, Stmt] | None"]

# values whose truth is Python's own and which `if` accepts (no kind check needed)
_PLAIN = frozenset({str, bool, int, float, list, dict, type(None), type(NO_VALUE)})


def compile_root(root: ListNode, scope: Scope, resolve: Resolver) -> Stmt:
    return _list(root, scope, resolve)


def _nothing(st: State, dot: Any) -> None:
    return None


def _list(lst: ListNode, scope: Scope, resolve: Resolver) -> Stmt:
    stmts = [s for n in lst.nodes if (s := _node(n, scope, resolve)) is not None]
    if not stmts:
        return _nothing
    if len(stmts) == 1:
        return stmts[0]
    items = tuple(stmts)
    if not _signals(lst):

        def run_all(st: State, dot: Any) -> None:
            for s in items:
                s(st, dot)

        return run_all

    def run_until_signal(st: State, dot: Any) -> Any:
        for s in items:
            signal = s(st, dot)
            if signal is not None:
                return signal
        return None

    return run_until_signal


def _node(n: Node, scope: Scope, resolve: Resolver) -> Stmt | None:
    if isinstance(n, TextNode):
        return _text(n) if n.text else None
    if isinstance(n, ActionNode):
        return _action(n, scope)
    if isinstance(n, (IfNode, WithNode)):
        return _branch(n, scope, resolve, isinstance(n, WithNode))
    if isinstance(n, RangeNode):
        return _range(n, scope, resolve)
    if isinstance(n, ListNode):
        return _list(n, scope, resolve)
    if isinstance(n, TemplateNode):
        return _template(n, scope, resolve)
    if isinstance(n, BreakNode):
        return lambda st, dot: BREAK
    if isinstance(n, ContinueNode):
        return lambda st, dot: CONTINUE
    if isinstance(n, CommentNode):
        return None
    message = f"unknown node: {n}"

    def unknown(st: State, dot: Any) -> None:
        raise st.error_at(n, message)

    return unknown


def _text(n: TextNode) -> Stmt:
    text = n.text
    size = len(text)

    def write_text(st: State, dot: Any) -> None:
        total = st.size + size
        st.size = total
        if total > st.max_output:
            raise st.output_exceeded(n)
        st.out.append(text)

    return write_text


def _action(n: ActionNode, scope: Scope) -> Stmt:
    assert n.pipe is not None
    if n.pipe.decl:
        declare = compile_pipeline(scope, n.pipe, strict=True)

        def declare_only(st: State, dot: Any) -> None:
            declare(st, dot)

        return declare_only
    pipe = compile_pipeline(scope, n.pipe, strict=False)

    def print_value(st: State, dot: Any) -> None:
        v = pipe(st, dot)
        s = v if type(v) is str else printed(v)
        total = st.size + len(s)
        st.size = total
        if total > st.max_output:
            raise st.output_exceeded(n)
        st.out.append(s)

    return print_value


def _branch(n: BranchNode, scope: Scope, resolve: Resolver, is_with: bool) -> Stmt:
    """if / with (an `else if`/`else with` is a branch nested in the else list)."""
    assert n.pipe is not None and n.list is not None
    mark = len(scope.vars)
    pipe = compile_pipeline(scope, n.pipe, strict=bool(n.pipe.decl))
    after = len(scope.vars)
    body = _list(n.list, scope, resolve)
    del scope.vars[after:]  # the else part runs without what the body declared
    otherwise = _list(n.else_list, scope, resolve) if n.else_list is not None else _nothing
    del scope.vars[mark:]
    pops = _declares(n)

    def branch(st: State, dot: Any) -> Any:
        mark = len(st.vars)
        val = pipe(st, dot)
        if type(val) in _PLAIN:
            truth = bool(val)
        else:
            if kind(val) == "func":
                raise st.errorf(f"if/with can't use {value_string(val)}")
            truth = is_true(val)
        if not truth:
            signal = otherwise(st, dot)
        elif is_with:
            saved = st.dot_iface
            st.dot_iface = False
            signal = body(st, val)
            st.dot_iface = saved
        else:
            signal = body(st, dot)
        if pops:
            del st.vars[mark:]
        return signal

    return branch


def _range(r: RangeNode, scope: Scope, resolve: Resolver) -> Stmt:
    assert r.pipe is not None and r.list is not None
    mark0 = len(scope.vars)
    decl = [v.ident[0] for v in r.pipe.decl]
    pipe = compile_pipeline(scope, r.pipe, strict=bool(decl))
    mark = len(scope.vars)
    body = _list(r.list, scope, resolve)
    del scope.vars[mark:]
    otherwise = _list(r.else_list, scope, resolve) if r.else_list is not None else _nothing
    del scope.vars[mark0:]
    body_pops = _declares(r.list)
    pops = _declares(r)
    assign = r.pipe.is_assign
    two = len(decl) > 1

    def iterate(st: State, elems: Any, keys: Any, iface: bool) -> None:
        stack = st.vars
        m = len(stack)
        limit = st.max_iterations
        saved = st.dot_iface
        top = stack[-1] if decl and not assign else None
        below = stack[-2] if two and not assign else None
        for i, elem in enumerate(elems):
            st.steps += 1
            if st.steps > limit:
                raise st.error_at(r, f"range iterations exceed {limit}", LimitError)
            if not st.steps & 255:
                st.check_time(r)
            if assign:
                if two:
                    st.set_var(decl[0], i if keys is None else keys[i])
                    st.set_var(decl[1], elem, iface)
                elif decl:
                    st.set_var(decl[0], elem, iface)
            else:
                if top is not None:
                    top[1] = elem
                    top[2] = iface
                if below is not None:
                    below[1] = i if keys is None else keys[i]
                    below[2] = False
            st.dot_iface = iface
            signal = body(st, elem)
            if body_pops:
                del stack[m:]
            st.dot_iface = saved
            if signal is BREAK:
                return

    def run_range(st: State, dot: Any) -> Any:
        mark = len(st.vars)
        val = pipe(st, dot)
        if val is None:
            val = NO_VALUE
        t = type(val)
        iface = t is list or t is dict
        signal = None
        if isinstance(val, list):
            if val:
                iterate(st, val, None, iface)
            else:
                signal = otherwise(st, dot)
        elif isinstance(val, bytes):
            if val:
                iterate(st, [GoUint8(b) for b in val], None, iface)
            else:
                signal = otherwise(st, dot)
        elif isinstance(val, dict):
            if val:
                keys = sorted(val, key=lambda k: k.encode("utf-8", "surrogateescape"))
                iterate(st, [val[k] for k in keys], keys, iface)
            else:
                signal = otherwise(st, dot)
        elif val is NO_VALUE:
            signal = otherwise(st, dot)
        elif t is int or t is GoUint8:
            if two:
                raise st.errorf(
                    f"can't use {value_string(val)} to iterate over more than one variable"
                )
            n = int(val)
            iterate(st, map(t, range(n)), None, iface)  # one variable at most: no index
            if n <= 0:
                signal = otherwise(st, dot)
        else:
            raise st.errorf(f"range can't iterate over {value_string(val)}")
        if pops:
            del st.vars[mark:]
        return signal

    return run_range


def _template(t: TemplateNode, scope: Scope, resolve: Resolver) -> Stmt:
    """{{template "name" pipeline}}: the callee runs with a fresh variable stack."""
    pipe = compile_pipeline(scope, t.pipe, strict=True) if t.pipe is not None else None
    target: list[tuple[Any, Stmt]] = []  # resolved on first use: templates may recurse
    name = t.name
    undefined = f"template {quote(name)} not defined"

    def call_template(st: State, dot: Any) -> None:
        if not target:
            found = resolve(name)
            if found is None:
                raise st.error_at(t, undefined)
            target.append(found)
        tmpl, code = target[0]
        if st.depth >= st.max_depth:
            raise st.error_at(t, f"exceeded maximum template depth ({st.max_depth})", LimitError)
        st.calls += 1
        if st.calls > st.limits.max_calls:
            raise st.error_at(t, f"template calls exceed {st.limits.max_calls}", LimitError)
        st.check_time(t)
        new_dot = pipe(st, dot) if pipe is not None else NO_VALUE
        saved = st.tmpl, st.vars, st.dot_iface
        st.tmpl, st.vars, st.dot_iface = tmpl, [["$", new_dot, False]], False
        st.depth += 1
        code(st, new_dot)
        st.depth -= 1
        st.tmpl, st.vars, st.dot_iface = saved

    return call_template


def _signals(n: Node | None) -> bool:
    """Whether running `n` can end in a break/continue for an enclosing range."""
    if n is None:
        return False
    if isinstance(n, (BreakNode, ContinueNode)):
        return True
    if isinstance(n, ListNode):
        return any(_signals(c) for c in n.nodes)
    if isinstance(n, RangeNode):  # its body's signals are its own; its else's are not
        return _signals(n.else_list)
    if isinstance(n, BranchNode):
        return _signals(n.list) or _signals(n.else_list)
    return False


def _declares(n: Node | None) -> bool:
    """Whether running `n` can declare variables (which its enclosing block then drops)."""
    if n is None:
        return False
    if isinstance(n, PipeNode):
        return bool(n.decl) or any(_declares(c) for c in n.cmds)
    if isinstance(n, CommandNode):
        return any(_declares(a) for a in n.args)
    if isinstance(n, ChainNode):
        return _declares(n.node)
    if isinstance(n, ListNode):
        return any(_declares(c) for c in n.nodes)
    if isinstance(n, BranchNode):
        return _declares(n.pipe) or _declares(n.list) or _declares(n.else_list)
    if isinstance(n, (ActionNode, TemplateNode)):
        return _declares(n.pipe)
    return False
