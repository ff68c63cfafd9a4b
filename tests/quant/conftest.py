"""Fixtures of the quant tests: the F32 SmolLM2 models, their imatrices, llama.cpp's
reference outputs, and a per-session memo of quantized tensors."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures"))

CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
MODELS = CACHE / "models" / "smollm2-f32"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"fixture {path} is missing: run `make fixtures`")
    return path


@pytest.fixture(scope="session")
def smollm2_f32() -> Path:
    """SmolLM2-135M dequantized to F32 (rows of 576 and 1536: K-quants fall back)."""
    return _require(MODELS / "SmolLM2-135M-F32.gguf")


@pytest.fixture(scope="session")
def smollm2_f32_2304() -> Path:
    """The same weights with every 2-D tensor re-shaped to rows of 2304."""
    return _require(MODELS / "SmolLM2-135M-F32-2304.gguf")


@pytest.fixture(scope="session")
def imatrix_dir() -> Path:
    """smollm2{,-2304}.imatrix.{gguf,dat}, measured on the model (fixtures/quant_models.py)."""
    return _require(MODELS)


class DiskTensorCache:
    """`quant.TensorCache` in a session temp dir: each (tensor, type, imatrix) is quantized
    once per test session, whichever file type asks for it first. Never kept across runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0

    def _path(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> bytes | None:
        p = self._path(key)
        if p.exists():
            self.hits += 1
            return p.read_bytes()
        return None

    def put(self, key: str, data: bytes) -> None:
        self._path(key).write_bytes(data)


@pytest.fixture(scope="session")
def tensor_cache(tmp_path_factory: pytest.TempPathFactory) -> DiskTensorCache:
    return DiskTensorCache(tmp_path_factory.mktemp("quantized-tensors"))
