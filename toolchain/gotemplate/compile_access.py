"""Field and variable access compiled into closures (Go's evalFieldChain, evalVariableNode).

The common lookups (a key of a plain map, a declared struct field) take a fast path whose
result depends only on the receiver's type, remembered per access site; everything else
goes through `exec.field_slow`, the full evalField. The fast path is written out in each
closure on purpose: on the hot path a Python call costs more than the lookup itself.
Variables are found at the stack index compilation predicts, checked by the stack's depth,
else by name as Go looks them up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolchain.gotemplate.builtins import GoFunc
from toolchain.gotemplate.exec import MISSING, State, field_slow, holds_iface
from toolchain.gotemplate.nodes import FieldNode, Node, VariableNode

Expr = Callable[[State, Any], Any]  # (state, dot) -> value
#: a field chain applied to a receiver: (state, receiver, iface, final) -> value
Fields = Callable[[State, Any, bool, Any], Any]


@dataclass(slots=True)
class Scope:
    """What compilation knows: the function map and the variables execution will have
    declared at this point (innermost last), mirroring Go's runtime stack."""

    funcs: dict[str, GoFunc]
    vars: list[str] = field(default_factory=lambda: ["$"])


def raiser(node: Node | None, msg: str) -> Callable[..., Any]:
    """A closure failing with `msg` at `node` (None: wherever execution last was)."""

    def run(st: State, dot: Any, final: Any = MISSING) -> Any:
        if node is not None:
            st.node = node
        raise st.errorf(msg)

    return run


def var_ref(scope: Scope, name: str) -> tuple[int, int]:
    """Where the variable will be: `stack[index]` whenever the runtime stack has `depth`
    entries (it always has, unless a conditional declaration in an `and`/`or` argument was
    skipped); otherwise it is looked up by name, as Go does. depth -1: always by name."""
    names = scope.vars
    if name not in names:
        return 0, -1
    return len(names) - 1 - names[::-1].index(name), len(names)


# -- field chains --------------------------------------------------------------------------
def fields_of(names: list[str], node: Node, args: list[Node] | None, staged: bool) -> Fields:
    """Go's evalFieldChain: (state, receiver, iface, final) -> value."""
    last = names[-1]
    caches = [set[type]() for _ in names]
    plain_last = caches[-1]
    last_has_args = (args is not None and len(args) > 1) or staged
    if len(names) == 1:
        if last_has_args:
            return lambda st, r, iface, final: field_slow(st, last, node, args, final, r, iface,
                                                           plain_last)  # fmt: skip

        def one(st: State, r: Any, iface: bool, final: Any) -> Any:
            t = type(r)
            if t is dict:
                if last in r:
                    return r[last]
            elif t in plain_last:
                return getattr(r, last)
            return field_slow(st, last, node, args, final, r, iface, plain_last)

        return one
    steps = list(zip(names[:-1], caches[:-1], strict=True))

    def chain(st: State, r: Any, iface: bool, final: Any) -> Any:
        for name, plain in steps:
            t = type(r)
            if t is dict and name in r:
                r = r[name]
                iface = True  # a plain map's elements are interface{} values
            elif t in plain:
                r = getattr(r, name)
                iface = False
            else:
                holder = r
                r = field_slow(st, name, node, None, MISSING, r, iface, plain)
                iface = holds_iface(holder)
        if not last_has_args:
            t = type(r)
            if t is dict:
                if last in r:
                    return r[last]
            elif t in plain_last:
                return getattr(r, last)
        return field_slow(st, last, node, args, final, r, iface, plain_last)

    return chain


def dot_fields(n: FieldNode, args: list[Node]) -> Expr:
    """`.A.B` without arguments, the most common thing a template does."""
    if len(n.ident) > 1:
        fields = fields_of(n.ident, n, args, False)

        def dot_chain(st: State, dot: Any) -> Any:
            st.node = n
            return fields(st, dot, st.dot_iface, MISSING)

        return dot_chain
    name = n.ident[0]
    plain = set[type]()

    def dot_field(st: State, dot: Any) -> Any:
        st.node = n
        t = type(dot)
        if t is dict:
            if name in dot:
                return dot[name]
        elif t in plain:
            return getattr(dot, name)
        return field_slow(st, name, n, args, MISSING, dot, st.dot_iface, plain)

    return dot_field


def compile_variable(scope: Scope, v: VariableNode, args: list[Node] | None, staged: bool) -> Any:
    """Go's evalVariableNode: `$x` or `$x.Field.Chain`."""
    name = v.ident[0]
    k, depth = var_ref(scope, name)
    if len(v.ident) == 1:
        if args and (len(args) > 1 or staged):
            arg0 = str(args[0])

            def var_with_args(st: State, dot: Any, final: Any = MISSING) -> Any:
                st.node = v
                st.var_entry(name)
                raise st.errorf(f"can't give argument to non-function {arg0}")

            return var_with_args

        def var(st: State, dot: Any) -> Any:
            st.node = v
            stack = st.vars
            return (stack[k] if len(stack) == depth else st.var_entry(name))[1]

        return var
    has_args = (args is not None and len(args) > 1) or staged
    if len(v.ident) == 2 and not has_args:
        key = v.ident[1]
        plain = set[type]()

        def var_field(st: State, dot: Any) -> Any:
            st.node = v
            stack = st.vars
            e = stack[k] if len(stack) == depth else st.var_entry(name)
            r = e[1]
            t = type(r)
            if t is dict:
                if key in r:
                    return r[key]
            elif t in plain:
                return getattr(r, key)
            return field_slow(st, key, v, args, MISSING, r, e[2], plain)

        return var_field
    fields = fields_of(v.ident[1:], v, args, staged)

    def var_fields(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = v
        stack = st.vars
        e = stack[k] if len(stack) == depth else st.var_entry(name)
        return fields(st, e[1], e[2], final)

    return var_fields
