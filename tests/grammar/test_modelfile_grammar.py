"""grammar/modelfile.lark on its own: what each terminal accepts (the reference's states)."""

from __future__ import annotations

import pytest
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from grammar import grammar_text


@pytest.fixture(scope="module")
def parser() -> Lark:
    return Lark(grammar_text("modelfile"), parser="lalr", lexer="contextual")


def shape(tree: Tree[Token]) -> list[tuple[str, ...]]:
    """(rule, token texts...) per item."""
    out = []
    for item in tree.children:
        assert isinstance(item, Tree)
        out.append((str(item.data), *(str(t) for t in item.children)))
    return out


def test_every_instruction(parser: Lark) -> None:
    text = (
        "FROM a\nadapter b\nTemplate c\nSYSTEM d\nLICENSE e\nREQUIRES f\nDRAFT g\n"
        "RENDERER h\nPARSER i\nQUANTIZE j\nimatrix j2\nPARAMETER k l\nMESSAGE user m\n# n\n"
    )
    assert [s[0] for s in shape(parser.parse(text))] == [
        "from",
        "adapter",
        "template",
        "system",
        "license",
        "requires",
        "draft",
        "renderer",
        "parser",
        "quantize",
        "imatrix",
        "parameter",
        "message",
        "comment",
    ]


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("FROM a b  \n", ("from", "FROM", " a b  ")),
        ("FROM\t  x", ("from", "FROM", "\t  x")),
        ('SYSTEM "a\nb"\n', ("system", "SYSTEM", ' "a\nb"')),
        ('SYSTEM "a" b\nc"\n', ("system", "SYSTEM", ' "a" b\nc"')),
        ('SYSTEM """a\n"\n""\n"""  \n', ("system", "SYSTEM", ' """a\n"\n""\n"""  ')),
        ('SYSTEM ""\n', ("system", "SYSTEM", ' ""')),
        ('SYSTEM """"""', ("system", "SYSTEM", ' """"""')),
        ("SYSTEM a\rFROM b", ("system", "SYSTEM", " a")),
        ("PARAMETER  x y", ("parameter", "PARAMETER", " ", " x y")),
        ("MESSAGE assistant\thi", ("message", "MESSAGE", " assistant", "\thi")),
        ("\x00FROM x", ("from", "\x00FROM", " x")),
        ('SYSTEM "\x00"\x00"x"""\n', ("system", "SYSTEM", ' "\x00"\x00"x"""')),
    ],
)
def test_token_extents(parser: Lark, text: str, tokens: tuple[str, ...]) -> None:
    assert shape(parser.parse(text))[0] == tokens


@pytest.mark.parametrize(
    "text",
    [
        "FROM",
        "FROM\nx",
        "FROMX y",
        "fröm x",
        "ſystem x",  # keywords: ASCII letters, then a blank
        "PARAM x",
        "\x00\x00FROM x",
        " \x00 FROM x",
        "PARAMETER x",
        "PARAMETER top-k 1",
        "MESSAGE User hi",
        "MESSAGE system\nhi",
        'SYSTEM """x""',
        'SYSTEM """',
        'SYSTEM "',
        'SYSTEM "x\n',
        'SYSTEM """a\n"""x\n',
        "FROM x\n  x",
    ],
)
def test_rejected(parser: Lark, text: str) -> None:
    with pytest.raises(UnexpectedInput):
        parser.parse(text)


def test_hash_inside_a_value_is_text(parser: Lark) -> None:
    assert shape(parser.parse("FROM foo # x\n"))[0] == ("from", "FROM", " foo # x")
