"""Parsed templates: `parse` (cached), `Template.execute`, and the one error type users see."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from toolchain.errors import MfcError
from toolchain.gotemplate.builtins import BUILTINS, GoFunc
from toolchain.gotemplate.compile import Stmt, compile_root
from toolchain.gotemplate.compile_access import Scope
from toolchain.gotemplate.exec import ExecError, LimitError, State
from toolchain.gotemplate.funcmap import OLLAMA_FUNCS
from toolchain.gotemplate.nodes import ListNode, Node
from toolchain.gotemplate.parser import ParseError, Tree, parse_trees
from toolchain.gotemplate.values import from_bytes


class TemplateError(MfcError):
    """A template that does not parse or fails while running, with Go's own message.

    `line`/`col` (1-based, columns in characters) locate the error in the template text;
    `kind` is "parse", "exec" or "limit".
    """

    def __init__(self, message: str, kind: str, line: int | None = None, col: int | None = None,
                 hint: str | None = None) -> None:  # fmt: skip
        super().__init__(message, hint=hint)
        self.kind = kind
        self.line = line
        self.col = col


@dataclass(frozen=True, slots=True)
class Limits:
    """Sandbox caps for one execution.

    `max_output` bounds the output and every string a function makes (`printf`, `print`,
    `json`, ...), so a variable doubled in a loop stops there too; `max_calls` bounds
    `{{template}}` calls (definitions that fan out), `max_seconds` the whole render.
    """

    max_iterations: int = 1_000_000
    max_output: int = 16 << 20
    max_depth: int = 200
    max_calls: int = 100_000
    max_seconds: float = 10.0


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class _Common:
    """What the templates of one set share: trees, function map, options, compiled code."""

    trees: dict[str, Tree]
    funcs: dict[str, GoFunc]
    missingkey: str
    source: str = ""
    views: dict[str, Template] = field(default_factory=dict)
    code: dict[str, tuple[Template, Stmt]] = field(default_factory=dict)

    def view(self, name: str) -> Template | None:
        view = self.views.get(name)
        if view is None:
            tree = self.trees.get(name)
            if tree is None:
                return None
            view = self.views[name] = Template(name, tree, self, self.source)
        return view

    def compiled(self, name: str) -> tuple[Template, Stmt] | None:
        """The template called `name` and its compiled body (compiled on first use)."""
        found = self.code.get(name)
        if found is None:
            view = self.view(name)
            if view is None or view.root is None:
                return None
            body = compile_root(view.root, Scope(self.funcs), self.compiled)
            found = self.code[name] = (view, body)
        return found


class Template:
    """One named template of a parsed set (Go's *template.Template)."""

    __slots__ = ("_common", "name", "source", "tree")

    def __init__(self, name: str, tree: Tree | None, common: _Common, source: str = "") -> None:
        self.name = name
        self.tree = tree
        self._common = common
        self.source = source

    @property
    def root(self) -> ListNode | None:
        return self.tree.root if self.tree is not None else None

    @property
    def funcs(self) -> dict[str, GoFunc]:
        return self._common.funcs

    @property
    def missingkey(self) -> str:
        return self._common.missingkey

    def templates(self) -> list[Template]:
        """Every template of the set (the main one and each define/block)."""
        return [t for name in self._common.trees if (t := self.lookup(name)) is not None]

    def lookup(self, name: str) -> Template | None:
        return self._common.view(name)

    def with_root(self, root: ListNode, funcs: dict[str, GoFunc] | None = None,
                  missingkey: str | None = None) -> Template:  # fmt: skip
        """A new single-tree template executing `root` (Ollama's touched-up/cut trees)."""
        tree = Tree(self.name)
        tree.text = self.tree.text if self.tree is not None else ""
        tree.parse_name = self.tree.parse_name if self.tree is not None else self.name
        tree.root = root
        if funcs is None and missingkey is None:
            trees = dict(self._common.trees)
            trees[self.name] = tree
            common = _Common(trees, self._common.funcs, self._common.missingkey, self.source)
        else:
            common = _Common({self.name: tree}, funcs if funcs is not None else {},
                             missingkey or "invalid", self.source)  # fmt: skip
        view = common.views[self.name] = Template(self.name, tree, common, self.source)
        return view

    def execute(self, data: Any, limits: Limits = DEFAULT_LIMITS) -> str:
        """Run the template on `data`; raises TemplateError with Go's message."""
        state = State(self, data, limits)
        try:
            if self.root is None:
                raise state.errorf(f"{_quote(self.name)} is an incomplete or empty template")
            self._body()(state, data)
        except ExecError as exc:
            raise _exec_error(exc, self, isinstance(exc, LimitError)) from None
        except RecursionError:
            raise TemplateError(
                f"template: {self.name}: nesting too deep to execute", "limit"
            ) from None
        return "".join(state.out)

    def _body(self) -> Stmt:
        common = self._common
        found = common.code.get(self.name) or common.compiled(self.name)
        if found is not None and found[0].tree is self.tree:
            return found[1]
        assert self.root is not None
        return compile_root(self.root, Scope(common.funcs), common.compiled)

    def execute_bytes(self, data: Any, limits: Limits = DEFAULT_LIMITS) -> bytes:
        return self.execute(data, limits).encode("utf-8", "surrogateescape")


def _quote(s: str) -> str:
    from toolchain.gotemplate.gofmt import quote

    return quote(s)


def locate(text: str, pos: int) -> tuple[int, int]:
    """(line, 1-based character column) of the byte offset `pos` in `text` (Go's node and
    token positions are byte offsets into the template's UTF-8)."""
    before = text.encode("utf-8", "surrogatepass")[:pos]
    line = before.count(b"\n") + 1
    last = before.rfind(b"\n")
    col = len(from_bytes(before[last + 1 :])) + 1
    return line, col


def _exec_error(exc: ExecError, tmpl: Template, limit: bool) -> TemplateError:
    line = col = None
    node: Node | None = exc.node
    if node is not None and node.tree is not None:
        line, col = locate(node.tree.text, node.pos)
    return TemplateError(exc.message, "limit" if limit else "exec", line, col)


FUNC_NAMES_BUILTIN = frozenset(BUILTINS)


def parse_with(text: str, name: str = "", funcs: dict[str, GoFunc] | None = None,
               missingkey: str = "invalid") -> Template:  # fmt: skip
    """Parse with an explicit function map and missingkey option (not cached)."""
    funcs = funcs if funcs is not None else {}
    names = FUNC_NAMES_BUILTIN | frozenset(funcs)
    try:
        trees = parse_trees(name, text, names)
    except ParseError as exc:
        line, col = locate(text, exc.pos)
        raise TemplateError(exc.message, "parse", line, col) from None
    except RecursionError:
        raise TemplateError(f"template: {name}: nesting too deep to parse", "parse") from None
    common = _Common(trees, funcs, missingkey, text)
    main = Template(name, trees.get(name), common, text)
    common.views[name] = main
    return main


@functools.lru_cache(maxsize=512)
def parse(text: str, name: str = "") -> Template:
    """Parse `text` as Ollama does: its function map, `missingkey=zero`. Cached by text."""
    return parse_with(text, name, OLLAMA_FUNCS, "zero")
