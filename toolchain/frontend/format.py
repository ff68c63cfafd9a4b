"""`mfc fmt`: one canonical layout for a Modelfile, with the same IR as the input.

Layout: one instruction per line, keywords upper-case, one space between the parts;
values bare when they read back unchanged, else in `"..."`, and in `\"\"\"...\"\"\"`
when they span lines (or start with `""`); comments kept where they are (trailing
blanks removed); runs of blank lines become one blank line; no indentation; LF line
ends between instructions; a final newline. Values themselves never change, CRs inside a
multi-line value included.
"""

from __future__ import annotations

from toolchain.errors import MfcError
from toolchain.ir import Comment, Instruction, Message, Modelfile, Parameter


class UnformattableValueError(MfcError):
    """A value no Modelfile text can produce (only possible for IR built by hand)."""


def _reads_back_bare(value: str) -> bool:
    return (
        value != ""
        and "\r" not in value
        and "\n" not in value
        and value == value.strip(" \t")
        and not value.startswith('"')
        and value.replace("\t", "").isprintable()
    )


def _ends_early_in_triple(value: str) -> bool:
    """Would `\"\"\"value\"\"\"` balance at a line break inside `value`? (§1.4)"""
    for i, ch in enumerate(value):
        if ch in "\r\n" and value[:i].rstrip(" \t\r\n").endswith('"""'):
            return True
    return False


def format_value(value: str) -> str:
    """`value` written so that the reference's parser reads exactly `value` back."""
    if _reads_back_bare(value):
        return value
    if not value.replace("\t", "").replace("\r", "").replace("\n", "").isprintable():
        raise UnformattableValueError(f"value {value!r} has characters a Modelfile drops")
    multiline = "\r" in value or "\n" in value
    # in "...", the value must not make the opening look like """ (`"` or `""x`)
    if not multiline and not ('"' + value + '"').startswith('"""'):
        return '"' + value + '"'
    if _ends_early_in_triple(value):
        raise UnformattableValueError(
            f'value {value!r} has a line ending in """, which would close it early'
        )
    return '"""' + value + '"""'


def format_instruction(ins: Instruction) -> str:
    """One instruction in canonical form (no trailing newline)."""
    keyword = ins.kind.upper()
    if isinstance(ins, Parameter):
        return f"{keyword} {ins.name} {format_value(ins.value)}"
    if isinstance(ins, Message):
        return f"{keyword} {ins.role} {format_value(ins.value)}"
    return f"{keyword} {format_value(ins.value)}"


def format_modelfile(mf: Modelfile) -> str:
    """The canonical text of `mf`, comments and paragraph breaks kept."""
    items: list[Instruction | Comment] = [*mf.instructions, *mf.comments]
    items.sort(key=lambda item: (item.span.line, item.span.col))
    out: list[str] = []
    previous_end = 0
    for item in items:
        if out and item.span.line - previous_end > 1:
            out.append("")
        if isinstance(item, Comment):
            out.append(item.text.rstrip(" \t"))
        else:
            out.append(format_instruction(item))
        previous_end = item.span.end_line
    return "".join(line + "\n" for line in out)
