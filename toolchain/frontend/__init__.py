"""The Modelfile front end: bytes -> IR, semantic checks, formatting, rendering.

    parse_modelfile(data, path) -> Modelfile     the reference's accept/reject and values
    load_modelfile(path) -> Modelfile
    parse_recovering(data, path)                  every syntax error, for `mfc check`
    check_modelfile(mf) -> list[Diagnostic]       semantic checks (TEMPLATE ones included)
    format_modelfile(mf) -> str                   `mfc fmt`'s canonical layout

Parameters and QUANTIZE types: `toolchain.frontend.parameters`; the reference's rendering
(`show --modelfile`): `toolchain.frontend.show`; FROM/ADAPTER paths:
`toolchain.frontend.paths`.
"""

from toolchain.frontend.check import check_modelfile
from toolchain.frontend.errors import (
    MissingFromError,
    ModelfileSyntaxError,
    ParserError,
    UnexpectedEOFError,
)
from toolchain.frontend.format import format_modelfile
from toolchain.frontend.parse import load_modelfile, parse_modelfile, parse_recovering

__all__ = [
    "MissingFromError",
    "ModelfileSyntaxError",
    "ParserError",
    "UnexpectedEOFError",
    "check_modelfile",
    "format_modelfile",
    "load_modelfile",
    "parse_modelfile",
    "parse_recovering",
]
