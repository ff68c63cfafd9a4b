# ruff: noqa: E501  # noqa: RUF100
"""A hypothesis grammar of Go templates covering every construct of the language.

Templates are built as text from a small context (which variables are declared, whether
we are inside a range), so most of them parse and run, and some deliberately do not
(arity errors, type errors, undefined functions), to compare error behaviour too.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from hypothesis import strategies as st

DATA: dict[str, Any] = {
    "S": "hello",
    "U": "héllo 你好 <b>&\"'\t=",
    "E": "",
    "N": 3.0,
    "F": 1.5,
    "Z": 0.0,
    "Big": 100000000.0,
    "Huge": 1e21,
    "Small": 1e-7,
    "Neg": -2.5,
    "B": True,
    "BF": False,
    "Nil": None,
    "L": ["a", "b", "c"],
    "LN": [1.0, 2.5, -3.0, 1e6],
    "LM": [
        {"Role": "system", "Content": "be brief"},
        {"Role": "user", "Content": "hi <there>"},
        {
            "Role": "assistant",
            "Content": "yo",
            "ToolCalls": [{"Name": "f", "Args": {"b": 2.0, "a": "x"}}],
        },
    ],
    "EL": [],
    "LX": [1.0, "two", None, True, [1.0, "x"], {"k": "v"}],
    "M": {"a": "x", "b": 2.0, "c": None, "nested": {"x": "deep", "y": [1.0, 2.0]}, "Role": "tool"},
    "EM": {},
    "MZ": {"z": 1.0, "a": 2.0, "10": 3.0, "2": 4.0, "é": 5.0, "B": 6.0},
}

FIELDS = [
    ".S",
    ".U",
    ".E",
    ".N",
    ".F",
    ".Z",
    ".Big",
    ".Huge",
    ".Small",
    ".Neg",
    ".B",
    ".BF",
    ".Nil",
    ".L",
    ".LN",
    ".LM",
    ".EL",
    ".LX",
    ".M",
    ".EM",
    ".MZ",
    ".Missing",
    ".M.a",
    ".M.b",
    ".M.c",
    ".M.nested",
    ".M.nested.x",
    ".M.nested.y",
    ".M.Missing",
    ".S.X",
    ".Nil.X",
    ".Missing.X",
    ".",
]
DOT_FIELDS = [".Role", ".Content", ".ToolCalls", ".X", ".", ".Name", ".Args", ".k"]
RANGEABLE = [".L", ".LN", ".LM", ".EL", ".LX", ".M", ".EM", ".MZ", ".Missing", ".Nil",
             ".M.nested", ".M.nested.y", ".S", ".N", ".B", "(slice .L 1)", "(index .LM 2).ToolCalls",
             "(index .LX 4)", ".LM"]  # fmt: skip
STRINGS = ['"x"', '"a b"', '""', '"%s|%d"', '"tab\\there"', '"q\\"uote"', '"\\u00e9\\x41\\101"',
           "`raw\\n`", '"<&>"', '"user"', '"Role"', '"a"', '"nested"', '"z"', '"é"']  # fmt: skip
NUMBERS = ["0", "1", "2", "-1", "3", "10", "0x10", "1_000", "017", "0b101", "1.5", "1e3", ".5",
           "2.0", "-0", "1e21", "100000000", "'a'", "'\\n'", "1i"]  # fmt: skip
VERBS = ["%v", "%s", "%d", "%q", "%x", "%X", "%t", "%T", "%5d", "%-5s|", "%05d", "%.2f", "%e",
         "%g", "%c", "%U", "%o", "%b", "%%", "%6.2f", "%+d", "%x", "%5.1s", "%q", "%08.3f", "%-8v|"]  # fmt: skip
FUNCS_1 = ["not", "len", "html", "js", "urlquery", "print", "println", "json", "toTypeScriptType"]
FUNCS_2 = ["eq", "ne", "lt", "le", "gt", "ge", "and", "or", "index", "print", "slice"]
FUNCS_N = ["and", "or", "eq", "print", "println", "index", "slice", "html", "call"]


class Ctx(NamedTuple):
    vars: tuple[str, ...] = ("$",)
    in_range: bool = False
    depth: int = 0
    dot_fields: bool = False

    def child(self, **kw: Any) -> Ctx:
        return self._replace(depth=self.depth + 1)._replace(**kw)


def literal() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS),
                     st.sampled_from(["true", "false", "nil"]))  # fmt: skip


@functools.cache
def operand(ctx: Ctx) -> st.SearchStrategy[str]:
    options = [literal(), st.sampled_from(FIELDS), st.sampled_from(ctx.vars)]
    if ctx.dot_fields:
        options.append(st.sampled_from(DOT_FIELDS))
    if len(ctx.vars) > 1:
        options.append(st.builds(lambda v, f: v + f, st.sampled_from(ctx.vars[1:]),
                                 st.sampled_from([".a", ".Role", ".X", ".nested"])))  # fmt: skip
    if ctx.depth < 2:
        options.append(st.builds(lambda p: f"({p})", st.deferred(lambda: pipeline(ctx.child()))))
        options.append(st.builds(lambda p, f: f"({p}){f}", st.deferred(lambda: command(ctx.child())),
                                 st.sampled_from([".a", ".Role", ".x"])))  # fmt: skip
    return st.one_of(options)


@functools.cache
def command(ctx: Ctx) -> Any:
    return _command(ctx)


@st.composite
def _command(draw: st.DrawFn, ctx: Ctx) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return draw(operand(ctx))
    if kind == 3:
        verb = draw(st.lists(st.sampled_from(VERBS), min_size=1, max_size=3))
        args = draw(st.lists(operand(ctx), min_size=0, max_size=3))
        return " ".join(['printf "' + " ".join(verb).replace('"', '\\"') + '"', *args])
    if kind <= 5:
        fn = draw(st.sampled_from(FUNCS_2))
        args = draw(st.lists(operand(ctx), min_size=2, max_size=2))
        return " ".join([fn, *args])
    if kind <= 7:
        fn = draw(st.sampled_from(FUNCS_1))
        return fn + " " + draw(operand(ctx))
    fn = draw(st.sampled_from(FUNCS_N))
    args = draw(st.lists(operand(ctx), min_size=0, max_size=4))
    return " ".join([fn, *args])


@functools.cache
def pipeline(ctx: Ctx) -> Any:
    return _pipeline(ctx)


@st.composite
def _pipeline(draw: st.DrawFn, ctx: Ctx) -> str:
    first = draw(command(ctx))
    stages = draw(st.lists(st.sampled_from(
        ["print", "len", "not", "html", "printf \"%v\"", "json", "eq \"x\"", "index .M", "urlquery",
         "or 0", "and 1", "println", "js"]), max_size=2))  # fmt: skip
    return " | ".join([first, *stages])


def _open(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["{{", "{{", "{{- ", "{{ "]))


def _close(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["}}", "}}", " -}}", " }}"]))


@functools.cache
def body(ctx: Ctx) -> Any:
    return _body(ctx)


@st.composite
def _body(draw: st.DrawFn, ctx: Ctx) -> tuple[str, Ctx]:
    """A list of items; returns the text and the context after it (declared variables)."""
    out: list[str] = []
    n = draw(st.integers(0, 3 if ctx.depth == 0 else 2 if ctx.depth < 2 else 1))
    for _ in range(n):
        piece, ctx = draw(item(ctx))
        out.append(piece)
    return "".join(out), ctx


def new_var(draw: st.DrawFn, ctx: Ctx) -> str:
    return draw(st.sampled_from(["$x", "$y", "$i", "$v", "$_"]))


@functools.cache
def item(ctx: Ctx) -> Any:
    return _item(ctx)


@st.composite
def _item(draw: st.DrawFn, ctx: Ctx) -> tuple[str, Ctx]:
    choices = ["text", "text", "action", "action", "decl", "comment"]
    if len(ctx.vars) > 1:
        choices.append("assign")
    if ctx.depth < 2:
        choices += ["if", "with", "range", "range", "if"]
    if ctx.in_range:
        choices += ["break", "continue"]
    choice = draw(st.sampled_from(choices))
    o, c = _open(draw), _close(draw)
    if choice == "text":
        return draw(st.sampled_from(["a", " ", "\n", "x y ", " \t\n ", "<b>", "é", "{", "}"])), ctx
    if choice == "comment":
        return draw(st.sampled_from(["{{/* c */}}", "{{- /* c\n */ -}}", "{{/*x*/}}"])), ctx
    if choice == "action":
        return f"{o}{draw(pipeline(ctx))}{c}", ctx
    if choice == "decl":
        name = new_var(draw, ctx)
        return f"{o}{name} := {draw(pipeline(ctx))}{c}", ctx._replace(vars=(*ctx.vars, name))
    if choice == "assign":
        name = draw(st.sampled_from(ctx.vars[1:]))
        return f"{o}{name} = {draw(pipeline(ctx))}{c}", ctx
    if choice in ("break", "continue"):
        return f"{o}{choice}{c}", ctx
    if choice == "range":
        decl, inner_vars = draw(
            st.sampled_from(
                [
                    ("", ()),
                    ("$e := ", ("$e",)),
                    ("$i, $e := ", ("$i", "$e")),
                    ("$k, $_ := ", ("$k", "$_")),
                ]
            )
        )
        target = draw(st.sampled_from(RANGEABLE))
        inner = ctx.child(vars=(*ctx.vars, *inner_vars), in_range=True, dot_fields=True)
        text, _ = draw(body(inner))
        out = f"{o}range {decl}{target}{c}{text}"
        if draw(st.booleans()):
            else_text, _ = draw(body(ctx.child(vars=(*ctx.vars, *inner_vars))))
            out += f"{_open(draw)}else{_close(draw)}{else_text}"
        return out + f"{_open(draw)}end{_close(draw)}", ctx
    keyword = choice
    decl = ""
    inner_vars: tuple[str, ...] = ()
    if draw(st.integers(0, 3)) == 0:
        decl, inner_vars = "$w := ", ("$w",)
    inner = ctx.child(vars=(*ctx.vars, *inner_vars), dot_fields=ctx.dot_fields or keyword == "with")
    text, _ = draw(body(inner))
    out = f"{o}{keyword} {decl}{draw(pipeline(ctx))}{c}{text}"
    for _ in range(draw(st.integers(0, 2))):
        text, _ = draw(body(inner))
        out += f"{_open(draw)}else {keyword} {draw(pipeline(inner))}{_close(draw)}{text}"
    if draw(st.booleans()):
        text, _ = draw(body(inner))
        out += f"{_open(draw)}else{_close(draw)}{text}"
    return out + f"{_open(draw)}end{_close(draw)}", ctx


@st.composite
def template(draw: st.DrawFn) -> str:
    text, _ = draw(body(Ctx()))
    extra = draw(st.sampled_from(["", "", "", "define", "block", "template"]))
    if extra == "define":
        inner, _ = draw(body(Ctx(dot_fields=True)))
        call = draw(st.sampled_from(['{{template "t" .M}}', '{{template "t"}}', '{{template "t" .LM}}',
                                     '{{template "nope"}}']))  # fmt: skip
        text = '{{define "t"}}' + inner + "{{end}}" + text + call
    elif extra == "block":
        inner, _ = draw(body(Ctx(dot_fields=True)))
        text += '{{block "b" .M}}' + inner + "{{end}}"
    elif extra == "template":
        text += '{{define "r"}}[{{.}}]{{end}}{{range .L}}{{template "r" .}}{{end}}'
    return text
