"""Fixtures for the build tests: a fresh store, tiny GGUF models and LoRA adapters."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fixtures.tiny_gguf import write_lora, write_tiny_model
from toolchain.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    write_tiny_model(d / "tiny.gguf")
    write_tiny_model(d / "other.gguf", seed=1, chat_template=None)
    write_tiny_model(d / "f32.gguf", seed=2, file_type=0)
    write_lora(d / "lora.gguf", targets={"blk.0.attn_q.weight": (8, 8)}, rank=2)
    write_tiny_model(d / "qwen.gguf", arch="qwen2", seed=3)
    write_lora(d / "qwen-lora.gguf", arch="qwen2", targets={"blk.0.attn_q.weight": (8, 8)}, rank=2)
    return d


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256) and every folder (-> "dir")."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[str(Path(dirpath, d).relative_to(root))] = "dir"
        for f in filenames:
            p = Path(dirpath, f)
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
