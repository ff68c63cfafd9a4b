"""Pipelines, commands, arguments and function calls compiled into closures.

Each closure does what Go's exec.go does for its node (evalPipeline, evalCommand, evalArg,
evalFunction; the call itself, evalCall, is built in compile_call), decided once at
compile time where Go decides it from the node: the argument kinds of a function, whether
a command has arguments, which error a literal in the wrong place gives. Runtime work is
left for what depends on the data. Every closure sets `State.node` where Go's `state.at`
would, so errors name the node Go's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolchain.gotemplate.builtins import BUILTINS
from toolchain.gotemplate.compile_access import (
    Expr,
    Scope,
    compile_variable,
    dot_fields,
    fields_of,
    raiser,
    var_ref,
)
from toolchain.gotemplate.compile_call import capped, compile_call
from toolchain.gotemplate.exec import MISSING, State, validate
from toolchain.gotemplate.gofmt import quote
from toolchain.gotemplate.nodes import (
    BoolNode,
    ChainNode,
    CommandNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    StringNode,
    VariableNode,
)
from toolchain.gotemplate.values import NO_VALUE

Stage = Callable[[State, Any, Any], Any]  # (state, dot, final) -> value: a later pipeline stage


# -- arguments (Go's evalArg) ----------------------------------------------------------------
def compile_arg(scope: Scope, n: Node, kind: str | None) -> Expr:
    """An argument for a parameter of `kind` ("value", "any", "string" or None)."""
    value: Expr | None = None
    if isinstance(n, DotNode):
        if kind == "any":

            def dot_any(st: State, dot: Any) -> Any:
                st.node = n
                return None if dot is NO_VALUE else dot

            return dot_any
        if kind != "string":

            def dot_value(st: State, dot: Any) -> Any:
                st.node = n
                return dot

            return dot_value

        def dot_string(st: State, dot: Any) -> Any:
            st.node = n
            return validate(st, dot, kind)

        return dot_string
    if isinstance(n, NilNode):
        if kind == "string":
            return raiser(n, "cannot assign nil to string")
        return _constant(n, None if kind == "any" else NO_VALUE)
    if isinstance(n, FieldNode):
        value = dot_fields(n, [n])
    elif isinstance(n, VariableNode):
        value = compile_variable(scope, n, None, False)
    elif isinstance(n, PipeNode):
        value = compile_pipeline(scope, n, strict=True)
    elif isinstance(n, IdentifierNode):
        value = compile_function(scope, n, n, None, False)
    elif isinstance(n, ChainNode):
        value = compile_chain(scope, n, None, False)
    if value is not None:
        return _validated(value, kind)
    if kind == "string":
        if isinstance(n, StringNode):
            return _constant(n, n.text)
        return raiser(n, f"expected string; found {n}")
    if kind is None:
        return raiser(n, f"can't handle {n} for arg of type <nil>")
    if isinstance(n, BoolNode):
        return _constant(n, n.value)
    if isinstance(n, NumberNode):
        return _number(n)
    if isinstance(n, StringNode):
        return _constant(n, n.text)
    return raiser(n, f"can't handle assignment of {n} to empty interface argument")


def _validated(value: Expr, kind: str | None) -> Expr:
    if kind not in ("any", "string"):
        return value
    return lambda st, dot: validate(st, value(st, dot), kind)


def _constant(n: Node, value: Any) -> Expr:
    def constant(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = n
        return value

    return constant


def _number(c: NumberNode) -> Expr:
    """Go's idealConstant, decided at compile time."""
    text = c.text
    if c.is_complex:
        return _constant(c, c.complex128)
    is_hex_int = len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(p in text for p in "pP")  # fmt: skip  # noqa: E501
    if c.is_float and not is_hex_int and text[0] != "'" and any(ch in text for ch in ".eEpP"):
        return _constant(c, c.float64)
    if c.is_int:
        return _constant(c, c.int64)
    if c.is_uint:
        return raiser(c, f"{text} overflows int")
    return _constant(c, NO_VALUE)


# -- commands (Go's evalCommand) ---------------------------------------------------------------
def compile_command(scope: Scope, cmd: CommandNode, pipe: PipeNode, staged: bool) -> Any:
    """The command as an Expr (first stage) or a Stage (later stages get the final value)."""
    first = cmd.args[0]
    if isinstance(first, FieldNode):
        if len(cmd.args) == 1 and not staged:
            return dot_fields(first, cmd.args)
        fields = fields_of(first.ident, first, cmd.args, staged)

        def field_cmd(st: State, dot: Any, final: Any = MISSING) -> Any:
            st.node = first
            return fields(st, dot, st.dot_iface, final)

        return field_cmd
    if isinstance(first, ChainNode):
        return compile_chain(scope, first, cmd.args, staged)
    if isinstance(first, IdentifierNode):
        return compile_function(scope, first, cmd, cmd.args, staged)
    if isinstance(first, VariableNode):
        return compile_variable(scope, first, cmd.args, staged)
    gives_args = len(cmd.args) > 1 or staged
    if isinstance(first, PipeNode):
        if gives_args:  # at stage 0 execution was last at the pipeline; later, wherever it was
            return raiser(None if staged else pipe, f"can't give argument to non-function {first}")
        return compile_pipeline(scope, first, strict=True)
    if gives_args:
        return raiser(first, f"can't give argument to non-function {cmd.args[0]}")
    if isinstance(first, BoolNode):
        return _constant(first, first.value)
    if isinstance(first, DotNode):

        def dot_cmd(st: State, dot: Any) -> Any:
            st.node = first
            return dot

        return dot_cmd
    if isinstance(first, NilNode):
        return raiser(first, "nil is not a command")
    if isinstance(first, NumberNode):
        return _number(first)
    if isinstance(first, StringNode):
        return _constant(first, first.text)
    return raiser(first, f"can't evaluate command {quote(str(first))}")


def compile_chain(scope: Scope, chain: ChainNode, args: list[Node] | None, staged: bool) -> Any:
    """Go's evalChainNode: `(pipeline).Field.Chain`."""
    if isinstance(chain.node, NilNode) or chain.node is None:
        return raiser(chain, f"indirection through explicit nil in {chain}")
    inner = compile_arg(scope, chain.node, None)
    fields = fields_of(chain.fields, chain, args, staged)

    def chain_value(st: State, dot: Any, final: Any = MISSING) -> Any:
        st.node = chain
        return fields(st, inner(st, dot), False, final)

    return chain_value


# -- function calls (Go's evalFunction) -------------------------------------------------------
def compile_function(
    scope: Scope, ident: IdentifierNode, node: Node, args: list[Node] | None, staged: bool
) -> Any:
    """The call of the function `ident` names: found, its arity checked, its arguments
    compiled for its parameters' kinds; the closure itself comes from compile_call, its
    output cap from capped."""
    name = ident.ident
    fn = scope.funcs.get(name)
    builtin = fn is None and name in BUILTINS
    if fn is None:
        fn = BUILTINS.get(name)
    if fn is None:
        return raiser(ident, f"{quote(name)} is not a defined function")
    argn = list(args[1:]) if args else []
    params = fn.params
    num_in = len(argn) + staged
    if fn.variadic is not None:
        if num_in < len(params):
            return raiser(
                ident,
                f"wrong number of args for {name}: want at least {len(params)} got {len(argn)}",
            )
    elif num_in != len(params):
        return raiser(ident, f"wrong number of args for {name}: want {len(params)} got {num_in}")
    kinds = [params[i] if i < len(params) else fn.variadic for i in range(num_in)]
    evals = [compile_arg(scope, a, kinds[i]) for i, a in enumerate(argn)]
    call = compile_call(
        ident, node, fn, evals=evals, argn=argn, kinds=kinds, staged=staged, builtin=builtin
    )
    return capped(name, node, call)


# -- pipelines (Go's evalPipeline) -------------------------------------------------------------
def compile_pipeline(scope: Scope, pipe: PipeNode, strict: bool) -> Expr:
    """The pipeline's value. Not `strict`: a nil result may come back as None instead of
    NO_VALUE (for callers to which the two are the same: printing, if, range)."""
    cmds = [compile_command(scope, c, pipe, i > 0) for i, c in enumerate(pipe.cmds)]
    first, rest = cmds[0], cmds[1:]
    names = [v.ident[0] for v in pipe.decl]
    assign = pipe.is_assign
    refs = [(n, *var_ref(scope, n)) for n in names] if assign else []
    if not assign:
        scope.vars.extend(names)
    if not rest and not names:
        if not strict or _never_nil(scope, pipe.cmds[0]):
            return first  # type: ignore[no-any-return]

        def single(st: State, dot: Any) -> Any:
            v = first(st, dot)
            return NO_VALUE if v is None else v

        return single
    if not rest and len(names) == 1 and not assign:
        name = names[0]

        def declare(st: State, dot: Any) -> Any:  # `$x := pipeline`
            v = first(st, dot)
            if v is None:
                v = NO_VALUE
            st.vars.append([name, v, False])
            return v

        return declare

    def pipeline(st: State, dot: Any) -> Any:
        v = first(st, dot)
        if v is None:
            v = NO_VALUE
        for cmd in rest:
            v = cmd(st, dot, v)
            if v is None:
                v = NO_VALUE
        if assign:
            stack = st.vars
            for name, k, depth in refs:
                e = stack[k] if len(stack) == depth else st.var_entry(name)
                e[1] = v
                e[2] = False
        else:
            for name in names:
                st.vars.append([name, v, False])
        return v

    return pipeline


def _never_nil(scope: Scope, cmd: CommandNode) -> bool:
    """Whether the command's value can never be a nil interface (no NO_VALUE fix-up needed)."""
    first = cmd.args[0]
    if isinstance(first, (StringNode, BoolNode, NumberNode)):
        return True
    if isinstance(first, IdentifierNode):
        fn = scope.funcs.get(first.ident) or BUILTINS.get(first.ident)
        return fn is not None and fn.never_nil
    return False
