"""The architectures mfc converts, looked up by config.json's "architectures"[0]."""

from __future__ import annotations

from pathlib import Path

from toolchain.convert.arch import bert, gemma3, llama, nomic_bert, qwen2, qwen3
from toolchain.convert.architecture import Architecture
from toolchain.convert.errors import ConvertError

ARCHITECTURES: tuple[Architecture, ...] = (
    llama.ARCH,
    qwen2.ARCH,
    qwen3.ARCH,
    gemma3.ARCH,
    bert.ARCH,
    nomic_bert.ARCH,
)

_BY_HF_NAME = {name: arch for arch in ARCHITECTURES for name in arch.hf_names}

#: every Hugging Face architecture name that converts, sorted
SUPPORTED = tuple(sorted(_BY_HF_NAME))


def architecture_for(hf_name: str, config_path: Path) -> Architecture:
    """The architecture module for `hf_name`, or an error listing the supported ones."""
    arch = _BY_HF_NAME.get(hf_name)
    if arch is None:
        raise ConvertError(
            config_path,
            f"unsupported architecture {hf_name!r}",
            hint="supported: " + ", ".join(SUPPORTED),
        )
    return arch
