"""TEMPLATE checks for `mfc check` (owned by the Go template engine).

`check_modelfile` calls `check_templates` and merges its diagnostics with its own.
"""

from __future__ import annotations

from toolchain.diagnostics import Diagnostic
from toolchain.ir import Modelfile


def check_templates(mf: Modelfile) -> list[Diagnostic]:
    """Diagnostics for every TEMPLATE of `mf` (parse errors at Modelfile positions)."""
    del mf
    return []
