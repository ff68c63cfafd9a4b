"""A function call compiled into a closure: Go's evalCall, once compile_expr has found the
function (evalFunction), checked its arity and compiled its arguments for their kinds.

The common shapes (one argument, two, a constant second one as in `eq .Role "user"`) get
closures of their own; `and`/`or` stop at the deciding argument; `call` always fails, as
nothing a template holds is a function. Functions whose result can outgrow their arguments
are capped at the state's max_output (`capped`).
"""

from __future__ import annotations

from typing import Any

from toolchain.gotemplate.builtins import FuncError, GoFunc
from toolchain.gotemplate.compile_access import Expr
from toolchain.gotemplate.exec import MISSING, State, validate
from toolchain.gotemplate.gofmt import STRING_CAP, StringCapError
from toolchain.gotemplate.nodes import BoolNode, IdentifierNode, NilNode, Node, StringNode
from toolchain.gotemplate.values import NO_VALUE, PLAIN_TRUTH, is_true, type_name

#: functions whose result can be longer than their arguments: capped at Limits.max_output
_GROWING = frozenset({"html", "js", "print", "printf", "println", "urlquery", "json"})


def capped(name: str, node: Node, call: Any) -> Any:
    """`call` (of the function `name`, at `node`), its result held to the state's
    max_output if that function's result can outgrow its arguments."""
    if name not in _GROWING:
        return call

    def bounded(st: State, dot: Any, *final: Any) -> Any:
        cap = STRING_CAP.set(st.max_output)
        try:
            v = call(st, dot, *final)
        except StringCapError:
            raise st.value_exceeded(node) from None
        finally:
            STRING_CAP.reset(cap)
        if type(v) is str and len(v) > st.max_output:
            raise st.value_exceeded(node)
        return v

    return bounded


def compile_call(
    ident: IdentifierNode,
    node: Node,
    fn: GoFunc,
    *,
    evals: list[Expr],
    argn: list[Node],
    kinds: list[str | None],
    staged: bool,
    builtin: bool,
) -> Any:
    """The call of `fn` (named by `ident`, at `node`) on the compiled arguments `evals` (of
    nodes `argn`, for parameters of `kinds`), plus the pipeline's final value if `staged`;
    `builtin`: `fn` is the builtin of that name, not one the template was given."""
    name = ident.ident
    if builtin and name in ("and", "or"):
        return _and_or(ident, evals, name == "or")
    final_kind = kinds[-1] if staged else None
    if builtin and name == "call":
        return _call(ident, node, evals, argn, staged=staged, final_kind=final_kind)
    f = fn.fn

    def error(st: State, exc: FuncError) -> Exception:
        return st.error_at(node, f"error calling {name}: {exc}")

    if not staged and len(evals) == 1:
        (a0,) = evals

        def call1(st: State, dot: Any) -> Any:
            st.node = ident
            v0 = a0(st, dot)
            try:
                return f(v0)
            except FuncError as exc:
                raise error(st, exc) from None

        return call1
    if not staged and len(evals) == 2 and (c1 := _literal(argn[1], kinds[1])) is not None:
        a0 = evals[0]
        n1, v1 = c1

        def call2_literal(st: State, dot: Any) -> Any:  # `eq .Role "user"`
            st.node = ident
            v0 = a0(st, dot)
            st.node = n1
            try:
                return f(v0, v1)
            except FuncError as exc:
                raise error(st, exc) from None

        return call2_literal
    if not staged and len(evals) == 2:
        a0, a1 = evals

        def call2(st: State, dot: Any) -> Any:
            st.node = ident
            v0 = a0(st, dot)
            v1 = a1(st, dot)
            try:
                return f(v0, v1)
            except FuncError as exc:
                raise error(st, exc) from None

        return call2

    def call(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = ident
        values = [a(st, dot) for a in evals]
        if staged:
            values.append(validate(st, final, final_kind))
        try:
            return f(*values)
        except FuncError as exc:
            raise error(st, exc) from None

    return call


def _literal(n: Node, kind: str | None) -> tuple[Node, Any] | None:
    """(node, value) of an argument that is a constant of its parameter's kind, else None."""
    if kind is None or (kind == "string" and not isinstance(n, StringNode)):
        return None
    if isinstance(n, (StringNode, BoolNode)):
        return n, n.text if isinstance(n, StringNode) else n.value
    if isinstance(n, NilNode):
        return n, None if kind == "any" else NO_VALUE
    return None


def _and_or(ident: IdentifierNode, evals: list[Expr], want: bool) -> Any:
    """and/or: arguments evaluated left to right until one decides (the final value last)."""

    def and_or(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = ident
        v: Any = NO_VALUE
        for a in evals:
            v = a(st, dot)
            if (bool(v) if type(v) in PLAIN_TRUTH else is_true(v)) is want:
                return v
        if final is not MISSING:
            v = final
        return v

    return and_or


def _call(ident: IdentifierNode, node: Node, evals: list[Expr], argn: list[Node], *,
          staged: bool, final_kind: str | None) -> Any:  # fmt: skip
    """`call`: nothing a template holds is a function, so it always fails (after its args)."""
    callee_text = str(argn[0]) if argn else "."

    def call(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = ident
        values = [a(st, dot) for a in evals]
        if staged:
            values.append(validate(st, final, final_kind))
        callee = values[0]
        st.node = node
        if callee is None or callee is NO_VALUE:
            raise st.errorf("error calling call: call of nil")
        raise st.errorf(
            f"error calling call: non-function {callee_text} of type {type_name(callee)}"
        )

    return call
