"""Converted files are made once per session and shared by the tests that read them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from toolchain.convert import convert_hf_dir

# the fixture generators (fixtures/tiny_*.py) import each other by bare name, as they do
# when run as scripts, so a test module may import any of them first
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "fixtures"))

Converter = Callable[[Path, str], Path]


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converter:
    """(HF directory, outtype) -> the GGUF mfc converts it to (cached for the session)."""
    cache: dict[tuple[Path, str], Path] = {}
    root = tmp_path_factory.mktemp("converted")

    def convert(src: Path, outtype: str) -> Path:
        key = (src, outtype)
        if key not in cache:
            out = root / f"{src.name}.{outtype}.gguf"
            convert_hf_dir(src, out, outtype)
            cache[key] = out
        return cache[key]

    return convert
