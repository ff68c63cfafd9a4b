# noqa: RUF100
"""Fixtures the toolchain's tests share: Go's own text/template as the oracle."""

from __future__ import annotations

import pytest

from tests.oracle.go_oracle import GoOracle, build


@pytest.fixture(scope="session")
def go_oracle() -> GoOracle:
    """Go's text/template with Ollama's function map (built once per session)."""
    try:
        return GoOracle(build())
    except RuntimeError as exc:
        pytest.fail(str(exc))
