"""The parse tree: one class per node kind, each with its byte position and Go's `String()`.

`str(node)` reproduces Go's text for the node, which execution errors quote
(`executing "" at <.Foo.Bar>: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolchain.gotemplate.parser import Tree


@dataclass(eq=False, slots=True)
class Node:
    pos: int
    tree: Tree | None = field(default=None, repr=False)

    def copy(self) -> Node:
        raise NotImplementedError


@dataclass(eq=False, slots=True)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)

    def copy(self) -> ListNode:
        return ListNode(self.pos, self.tree, [n.copy() for n in self.nodes])


@dataclass(eq=False, slots=True)
class TextNode(Node):
    text: str = ""

    def __str__(self) -> str:
        return self.text

    def copy(self) -> TextNode:
        return TextNode(self.pos, self.tree, self.text)


@dataclass(eq=False, slots=True)
class CommentNode(Node):
    text: str = ""

    def __str__(self) -> str:
        return "{{" + self.text + "}}"

    def copy(self) -> CommentNode:
        return CommentNode(self.pos, self.tree, self.text)


@dataclass(eq=False, slots=True)
class VariableNode(Node):
    ident: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return ".".join(self.ident)

    def copy(self) -> VariableNode:
        return VariableNode(self.pos, self.tree, list(self.ident))


@dataclass(eq=False, slots=True)
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)

    def copy(self) -> CommandNode:
        return CommandNode(self.pos, self.tree, [a.copy() for a in self.args])


@dataclass(eq=False, slots=True)
class PipeNode(Node):
    line: int = 0
    is_assign: bool = False
    decl: list[VariableNode] = field(default_factory=list)
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)

    def copy(self) -> PipeNode:
        return PipeNode(
            self.pos,
            self.tree,
            self.line,
            self.is_assign,
            [v.copy() for v in self.decl],
            [c.copy() for c in self.cmds],
        )


@dataclass(eq=False, slots=True)
class ActionNode(Node):
    line: int = 0
    pipe: PipeNode | None = None

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"

    def copy(self) -> ActionNode:
        return ActionNode(self.pos, self.tree, self.line, self.pipe.copy() if self.pipe else None)


@dataclass(eq=False, slots=True)
class IdentifierNode(Node):
    ident: str = ""

    def __str__(self) -> str:
        return self.ident

    def copy(self) -> IdentifierNode:
        return IdentifierNode(self.pos, self.tree, self.ident)


@dataclass(eq=False, slots=True)
class DotNode(Node):
    def __str__(self) -> str:
        return "."

    def copy(self) -> DotNode:
        return DotNode(self.pos, self.tree)


@dataclass(eq=False, slots=True)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"

    def copy(self) -> NilNode:
        return NilNode(self.pos, self.tree)


@dataclass(eq=False, slots=True)
class FieldNode(Node):
    ident: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)

    def copy(self) -> FieldNode:
        return FieldNode(self.pos, self.tree, list(self.ident))


@dataclass(eq=False, slots=True)
class ChainNode(Node):
    node: Node | None = None
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        base = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return base + "".join("." + f for f in self.fields)

    def copy(self) -> ChainNode:
        return ChainNode(self.pos, self.tree, self.node, list(self.fields))


@dataclass(eq=False, slots=True)
class BoolNode(Node):
    value: bool = False

    def __str__(self) -> str:
        return "true" if self.value else "false"

    def copy(self) -> BoolNode:
        return BoolNode(self.pos, self.tree, self.value)


@dataclass(eq=False, slots=True)
class NumberNode(Node):
    text: str = ""
    is_int: bool = False
    is_uint: bool = False
    is_float: bool = False
    is_complex: bool = False
    int64: int = 0
    uint64: int = 0
    float64: float = 0.0
    complex128: complex = 0j

    def __str__(self) -> str:
        return self.text

    def copy(self) -> NumberNode:
        return NumberNode(
            self.pos, self.tree, self.text, self.is_int, self.is_uint, self.is_float,
            self.is_complex, self.int64, self.uint64, self.float64, self.complex128,
        )  # fmt: skip


@dataclass(eq=False, slots=True)
class StringNode(Node):
    quoted: str = ""
    text: str = ""

    def __str__(self) -> str:
        return self.quoted

    def copy(self) -> StringNode:
        return StringNode(self.pos, self.tree, self.quoted, self.text)


@dataclass(eq=False, slots=True)
class EndNode(Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(eq=False, slots=True)
class ElseNode(Node):
    line: int = 0

    def __str__(self) -> str:
        return "{{else}}"


@dataclass(eq=False, slots=True)
class BranchNode(Node):
    """if / range / with: a pipeline, a body and an optional else body."""

    line: int = 0
    pipe: PipeNode | None = None
    list: ListNode | None = None
    else_list: ListNode | None = None

    keyword = ""

    def __str__(self) -> str:
        out = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            out += "{{else}}" + str(self.else_list)
        return out + "{{end}}"

    def copy(self) -> BranchNode:
        return type(self)(
            self.pos,
            self.tree,
            self.line,
            self.pipe.copy() if self.pipe else None,
            self.list.copy() if self.list else None,
            self.else_list.copy() if self.else_list else None,
        )


@dataclass(eq=False, slots=True)
class IfNode(BranchNode):
    keyword = "if"


@dataclass(eq=False, slots=True)
class RangeNode(BranchNode):
    keyword = "range"


@dataclass(eq=False, slots=True)
class WithNode(BranchNode):
    keyword = "with"


@dataclass(eq=False, slots=True)
class BreakNode(Node):
    line: int = 0

    def __str__(self) -> str:
        return "{{break}}"

    def copy(self) -> BreakNode:
        return BreakNode(self.pos, self.tree, self.line)


@dataclass(eq=False, slots=True)
class ContinueNode(Node):
    line: int = 0

    def __str__(self) -> str:
        return "{{continue}}"

    def copy(self) -> ContinueNode:
        return ContinueNode(self.pos, self.tree, self.line)


@dataclass(eq=False, slots=True)
class TemplateNode(Node):
    line: int = 0
    name: str = ""
    pipe: PipeNode | None = None

    def __str__(self) -> str:
        from toolchain.gotemplate.gofmt import quote

        tail = " " + str(self.pipe) if self.pipe is not None else ""
        return "{{template " + quote(self.name) + tail + "}}"

    def copy(self) -> TemplateNode:
        return TemplateNode(
            self.pos, self.tree, self.line, self.name, self.pipe.copy() if self.pipe else None
        )


def is_empty_tree(n: Node | None) -> bool:
    """Go's IsEmptyTree: nothing but whitespace text and comments."""
    if n is None or isinstance(n, CommentNode):
        return True
    if isinstance(n, ListNode):
        return all(is_empty_tree(c) for c in n.nodes)
    if isinstance(n, TextNode):
        return n.text.strip(" \t\n\v\f\r\x85\xa0") == ""
    return False
