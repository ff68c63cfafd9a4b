"""Recursive-descent parser for text/template, following Go's parse.go step by step.

The same three-token lookahead as Go's, so that error messages carry the same line
numbers: `template: NAME:LINE: message`. This module holds the token stream, the
definitions and the control structures (if/range/with/block/template); pipelines and
their operands are parsed in `pipeline.py`.
"""

from __future__ import annotations

from toolchain.gotemplate.gofmt import quote
from toolchain.gotemplate.items import Item, T
from toolchain.gotemplate.lexer import Lexer
from toolchain.gotemplate.literals import SyntaxErr, unquote
from toolchain.gotemplate.nodes import (
    ActionNode,
    BreakNode,
    CommentNode,
    ContinueNode,
    ElseNode,
    EndNode,
    IfNode,
    ListNode,
    Node,
    RangeNode,
    TemplateNode,
    TextNode,
    WithNode,
    is_empty_tree,
)
from toolchain.gotemplate.pipeline import parse_pipeline


class ParseError(Exception):
    """A parse error with Go's message; `pos` is the byte offset of the offending token."""

    def __init__(self, message: str, line: int, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.pos = pos


class Tree:
    """One parsed template (the main text or one {{define}}/{{block}})."""

    def __init__(self, name: str, funcs: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.parse_name = name
        self.root: ListNode | None = None
        self.text = ""
        self.funcs = funcs
        self.lex: Lexer | None = None
        self.token: list[Item] = [Item(T.EOF, 0, "", 0)] * 3
        self.peek_count = 0
        self.vars: list[str] = ["$"]
        self.tree_set: dict[str, Tree] = {}
        self.action_line = 0
        self.range_depth = 0
        self._text_bytes: bytes | None = None

    @property
    def text_bytes(self) -> bytes:
        """The source as UTF-8 (positions are byte offsets into it)."""
        if self._text_bytes is None:
            self._text_bytes = self.text.encode("utf-8", "surrogatepass")
        return self._text_bytes

    # -- token stream ------------------------------------------------------------
    def next(self) -> Item:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            assert self.lex is not None
            self.token[0] = self.lex.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Item) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Item, t1: Item) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Item:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        assert self.lex is not None
        self.peek_count = 1
        self.token[0] = self.lex.next_item()
        return self.token[0]

    def next_non_space(self) -> Item:
        while True:
            tok = self.next()
            if tok.typ != T.SPACE:
                return tok

    def peek_non_space(self) -> Item:
        tok = self.next_non_space()
        self.backup()
        return tok

    # -- errors --------------------------------------------------------------------
    def errorf(self, msg: str) -> ParseError:
        tok = self.token[0]
        return ParseError(f"template: {self.parse_name}:{tok.line}: {msg}", tok.line, tok.pos)

    def expect(self, expected: T, context: str) -> Item:
        tok = self.next_non_space()
        if tok.typ != expected:
            raise self.unexpected(tok, context)
        return tok

    def unexpected(self, tok: Item, context: str) -> ParseError:
        if tok.typ == T.ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != tok.line:  # noqa: PLR1714
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if tok.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return self.errorf(f"{tok.describe()}{extra}")
        return self.errorf(f"unexpected {tok.describe()} in {context}")

    # -- entry -------------------------------------------------------------------
    def start_parse(self, lex: Lexer, tree_set: dict[str, Tree]) -> None:
        self.root = None
        self.lex = lex
        self.vars = ["$"]
        self.tree_set = tree_set

    def parse(self, text: str, tree_set: dict[str, Tree]) -> None:
        self.parse_name = self.name
        lex = Lexer(text, "break" not in self.funcs, "continue" not in self.funcs)
        self.start_parse(lex, tree_set)
        self.text = text
        self._parse_top()
        self.add()

    def add(self) -> None:
        tree = self.tree_set.get(self.name)
        if tree is None or is_empty_tree(tree.root):
            self.tree_set[self.name] = self
            return
        if not is_empty_tree(self.root):
            raise self.errorf(f"template: multiple definition of template {quote(self.name)}")

    def _new_child(self, name: str) -> Tree:
        child = Tree(name, self.funcs)
        child.text = self.text
        child.parse_name = self.parse_name
        assert self.lex is not None
        child.start_parse(self.lex, self.tree_set)
        return child

    def _parse_top(self) -> None:
        self.root = ListNode(self.peek().pos, self)
        while self.peek().typ != T.EOF:
            if self.peek().typ == T.LEFT_DELIM:
                delim = self.next()
                if self.next_non_space().typ == T.DEFINE:
                    child = self._new_child("definition")
                    child.parse_definition()
                    continue
                self.backup2(delim)
            n = self.text_or_action()
            if isinstance(n, (EndNode, ElseNode)):
                raise self.errorf(f"unexpected {n}")
            self.root.nodes.append(n)

    def parse_definition(self) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.typ not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(tok, context)
        self.name = self.unquote(tok.val)
        self.expect(T.RIGHT_DELIM, context)
        self.root, end = self.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos, self)
        while self.peek_non_space().typ != T.EOF:
            n = self.text_or_action()
            if isinstance(n, (EndNode, ElseNode)):
                return lst, n
            lst.nodes.append(n)
        raise self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.typ == T.TEXT:
            return TextNode(tok.pos, self, tok.val)
        if tok.typ == T.LEFT_DELIM:
            self.action_line = tok.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if tok.typ == T.COMMENT:
            return CommentNode(tok.pos, self, tok.val)
        raise self.unexpected(tok, "input")

    def action(self) -> Node:
        tok = self.next_non_space()
        typ = tok.typ
        if typ == T.BLOCK:
            return self.block_control()
        if typ in (T.BREAK, T.CONTINUE):
            word = "break" if typ == T.BREAK else "continue"
            nxt = self.next_non_space()
            if nxt.typ != T.RIGHT_DELIM:
                raise self.unexpected(nxt, "{{" + word + "}}")
            if self.range_depth == 0:
                raise self.errorf("{{" + word + "}} outside {{range}}")
            cls = BreakNode if typ == T.BREAK else ContinueNode
            return cls(tok.pos, self, tok.line)
        if typ == T.ELSE:
            return self.else_control()
        if typ == T.END:
            return EndNode(self.expect(T.RIGHT_DELIM, "end").pos, self)
        if typ in (T.IF, T.RANGE, T.WITH):
            return self.control(typ)
        if typ == T.TEMPLATE:
            return self.template_control()
        self.backup()
        tok = self.peek()
        return ActionNode(tok.pos, self, tok.line, parse_pipeline(self, "command", T.RIGHT_DELIM))

    def control(self, typ: T) -> Node:
        context = {T.IF: "if", T.RANGE: "range", T.WITH: "with"}[typ]
        mark = len(self.vars)
        try:
            pipe = parse_pipeline(self, context, T.RIGHT_DELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if isinstance(nxt, ElseNode):
                if context in ("if", "with") and self.peek().typ == typ:
                    self.next()
                    else_list = ListNode(nxt.pos, self)
                    else_list.nodes.append(self.control(typ))
                else:
                    else_list, nxt = self.item_list()
                    if not isinstance(nxt, EndNode):
                        raise self.errorf(f"expected end; found {nxt}")
        finally:
            del self.vars[mark:]
        cls = {T.IF: IfNode, T.RANGE: RangeNode, T.WITH: WithNode}[typ]
        return cls(pipe.pos, self, pipe.line, pipe, lst, else_list)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ in (T.IF, T.WITH):
            return ElseNode(peek.pos, self, peek.line)
        tok = self.expect(T.RIGHT_DELIM, "else")
        return ElseNode(tok.pos, self, tok.line)

    def block_control(self) -> Node:
        context = "block clause"
        tok = self.next_non_space()
        name = self.parse_template_name(tok, context)
        pipe = parse_pipeline(self, context, T.RIGHT_DELIM)
        block = self._new_child(name)
        block.root, end = block.item_list()
        if not isinstance(end, EndNode):
            raise self.errorf(f"unexpected {end} in {context}")
        block.add()
        return TemplateNode(tok.pos, self, tok.line, name, pipe)

    def template_control(self) -> Node:
        context = "template clause"
        tok = self.next_non_space()
        name = self.parse_template_name(tok, context)
        pipe = None
        if self.next_non_space().typ != T.RIGHT_DELIM:
            self.backup()
            pipe = parse_pipeline(self, context, T.RIGHT_DELIM)
        return TemplateNode(tok.pos, self, tok.line, name, pipe)

    def parse_template_name(self, tok: Item, context: str) -> str:
        if tok.typ in (T.STRING, T.RAW_STRING):
            return self.unquote(tok.val)
        raise self.unexpected(tok, context)

    def unquote(self, s: str) -> str:
        """A string literal's value, or Go's syntax error at the current token."""
        try:
            return unquote(s)
        except SyntaxErr as exc:
            raise self.errorf(str(exc)) from None


def parse_trees(name: str, text: str, funcs: frozenset[str]) -> dict[str, Tree]:
    """Parse `text` into the main tree (named `name`) and every {{define}}/{{block}} tree."""
    tree_set: dict[str, Tree] = {}
    t = Tree(name, funcs)
    t.text = text
    t.parse(text, tree_set)
    return tree_set
