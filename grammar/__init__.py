"""Lark grammars (data) and a tiny loader."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def grammar_text(name: str) -> str:
    """The text of `grammar/<name>.lark`."""
    return resources.files(__package__).joinpath(f"{name}.lark").read_text(encoding="utf-8")
