"""Parsing of pipelines and what they are made of: declarations, commands, operands, terms.

Go's parse.go `pipeline`, `command`, `operand` and `term`, as functions over the `Tree` being
parsed (its token stream, variables and errors); the control structures that contain
pipelines are in `parser.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolchain.gotemplate.gofmt import quote
from toolchain.gotemplate.items import T
from toolchain.gotemplate.literals import number_node
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

if TYPE_CHECKING:
    from toolchain.gotemplate.parser import Tree


_OPERAND_START = frozenset(
    {T.BOOL, T.CHAR_CONSTANT, T.COMPLEX, T.DOT, T.FIELD, T.IDENTIFIER, T.NUMBER, T.NIL,
     T.RAW_STRING, T.STRING, T.VARIABLE, T.LEFT_PAREN}
)  # fmt: skip


def parse_pipeline(tree: Tree, context: str, end: T) -> PipeNode:
    """The pipeline of an action or clause, up to `end` (`}}` or `)`), its declarations
    included; `context` names the clause in errors (`missing value for if`)."""
    tok = tree.peek_non_space()
    pipe = PipeNode(tok.pos, tree, tok.line)
    while True:  # declarations
        v = tree.peek_non_space()
        if v.typ != T.VARIABLE:
            break
        tree.next()
        after = tree.peek()
        nxt = tree.peek_non_space()
        if nxt.typ in (T.ASSIGN, T.DECLARE):
            pipe.is_assign = nxt.typ == T.ASSIGN
            tree.next_non_space()
            pipe.decl.append(_variable(v.pos, tree, v.val))
            tree.vars.append(v.val)
        elif nxt.typ == T.CHAR and nxt.val == ",":
            tree.next_non_space()
            pipe.decl.append(_variable(v.pos, tree, v.val))
            tree.vars.append(v.val)
            if context == "range" and len(pipe.decl) < 2:
                if tree.peek_non_space().typ in (T.VARIABLE, T.RIGHT_DELIM, T.RIGHT_PAREN):
                    continue
                raise tree.errorf("range can only initialize variables")
            raise tree.errorf(f"too many declarations in {context}")
        elif after.typ == T.SPACE:
            tree.backup3(v, after)
        else:
            tree.backup2(v)
        break
    while True:
        tok = tree.next_non_space()
        if tok.typ == end:
            _check_pipeline(tree, pipe, context)
            return pipe
        if tok.typ in _OPERAND_START:
            tree.backup()
            pipe.cmds.append(_command(tree))
        else:
            raise tree.unexpected(tok, context)


def _check_pipeline(tree: Tree, pipe: PipeNode, context: str) -> None:
    if not pipe.cmds:
        raise tree.errorf(f"missing value for {context}")
    for i, c in enumerate(pipe.cmds[1:]):
        if isinstance(c.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
            raise tree.errorf(f"non executable command in pipeline stage {i + 2}")


def _command(tree: Tree) -> CommandNode:
    cmd = CommandNode(tree.peek_non_space().pos, tree)
    while True:
        tree.peek_non_space()
        operand = _operand(tree)
        if operand is not None:
            cmd.args.append(operand)
        tok = tree.next()
        if tok.typ == T.SPACE:
            continue
        if tok.typ in (T.RIGHT_DELIM, T.RIGHT_PAREN):
            tree.backup()
        elif tok.typ != T.PIPE:
            raise tree.unexpected(tok, "operand")
        break
    if not cmd.args:
        raise tree.errorf("empty command")
    return cmd


def _operand(tree: Tree) -> Node | None:
    node = _term(tree)
    if node is None:
        return None
    if tree.peek().typ == T.FIELD:
        chain = ChainNode(tree.peek().pos, tree, node)
        while tree.peek().typ == T.FIELD:
            chain.fields.append(tree.next().val[1:])
        if isinstance(node, FieldNode):
            return FieldNode(chain.pos, tree, str(chain)[1:].split("."))
        if isinstance(node, VariableNode):
            return _variable(chain.pos, tree, str(chain))
        if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
            raise tree.errorf(f"unexpected . after term {quote(str(node))}")
        return chain
    return node


def _term(tree: Tree) -> Node | None:
    tok = tree.next_non_space()
    typ = tok.typ
    if typ == T.IDENTIFIER:
        if tok.val not in tree.funcs:
            raise tree.errorf(f"function {quote(tok.val)} not defined")
        return IdentifierNode(tok.pos, tree, tok.val)
    if typ == T.DOT:
        return DotNode(tok.pos, tree)
    if typ == T.NIL:
        return NilNode(tok.pos, tree)
    if typ == T.VARIABLE:
        return _use_var(tree, tok.pos, tok.val)
    if typ == T.FIELD:
        return FieldNode(tok.pos, tree, tok.val[1:].split("."))
    if typ == T.BOOL:
        return BoolNode(tok.pos, tree, tok.val == "true")
    if typ in (T.CHAR_CONSTANT, T.COMPLEX, T.NUMBER):
        kind = {T.CHAR_CONSTANT: "char", T.COMPLEX: "complex", T.NUMBER: "number"}[typ]
        try:
            n = number_node(tok.pos, tok.val, kind)
        except ValueError as exc:
            raise tree.errorf(str(exc)) from None
        n.tree = tree
        return n
    if typ == T.LEFT_PAREN:
        return parse_pipeline(tree, "parenthesized pipeline", T.RIGHT_PAREN)
    if typ in (T.STRING, T.RAW_STRING):
        return StringNode(tok.pos, tree, tok.val, tree.unquote(tok.val))
    tree.backup()
    return None


def _use_var(tree: Tree, pos: int, name: str) -> Node:
    v = _variable(pos, tree, name)
    if v.ident[0] in tree.vars:
        return v
    raise tree.errorf(f"undefined variable {quote(v.ident[0])}")


def _variable(pos: int, tree: Tree, ident: str) -> VariableNode:
    return VariableNode(pos, tree, ident.split("."))
