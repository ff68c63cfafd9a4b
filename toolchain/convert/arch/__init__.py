"""The architectures mfc converts, looked up by config.json's "architectures"[0]."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolchain.convert.arch import (
    bert,
    deepseek,
    dense,
    gemma,
    gemma3,
    gemma3n,
    gemma4,
    glm_ocr,
    gpt_oss,
    laguna,
    lfm2,
    llama,
    llama4,
    mistral3,
    moe,
    nemotron_h,
    nomic_bert,
    qwen2,
    qwen3,
    qwen_next,
    qwen_vl,
    vision,
    xlm_roberta,
)
from toolchain.convert.arch.not_supported import NOT_SUPPORTED
from toolchain.convert.architecture import Architecture
from toolchain.convert.errors import ConvertError

ARCHITECTURES: tuple[Architecture, ...] = (
    llama.ARCH,
    moe.MIXTRAL,
    mistral3.ARCH,
    llama4.ARCH,
    qwen2.ARCH,
    moe.QWEN2MOE,
    qwen3.ARCH,
    moe.QWEN3MOE,
    qwen_vl.QWEN3VL,
    qwen_vl.QWEN3VLMOE,
    gemma.GEMMA,
    gemma.GEMMA2,
    gemma3.ARCH,
    gemma3.EMBEDDING,
    dense.PHI3,
    dense.OLMO2,
    dense.OLMO3,
    dense.GRANITE,
    dense.SMOLLM3,
    dense.COMMAND_R,
    moe.GLM4MOE,
    lfm2.ARCH,
    lfm2.MOE,
    lfm2.VLM,
    deepseek.ARCH,
    deepseek.GLM4_MOE_LITE,
    gpt_oss.ARCH,
    bert.ARCH,
    nomic_bert.ARCH,
    nomic_bert.MOE,
    xlm_roberta.ARCH,
    *vision.TEXT_MODELS,
    laguna.ARCH,
    glm_ocr.ARCH,
    nemotron_h.ARCH,
    nemotron_h.MOE,
    gemma3n.ARCH,
    gemma4.ARCH,
    gemma4.VLM,
    qwen_next.QWEN3NEXT,
    qwen_next.QWEN35,
    qwen_next.QWEN35MOE,
)

_BY_HF_NAME = {
    name: arch for arch in ARCHITECTURES if arch.selected_by is None for name in arch.hf_names
}

#: every Hugging Face architecture name that converts, sorted
SUPPORTED = tuple(sorted(_BY_HF_NAME))


def architecture_for(
    hf_name: str, config_path: Path, config: Mapping[str, Any] | None = None
) -> Architecture:
    """The architecture entry for `hf_name` (a variant if `config` selects one), or an
    error listing the supported ones."""
    for variant in ARCHITECTURES:
        if variant.selected_by and hf_name in variant.hf_names and config:
            when = variant.selected_when
            if when[1](config) if when is not None else config.get(variant.selected_by):
                return variant
    arch = _BY_HF_NAME.get(hf_name)
    if arch is None:
        why = NOT_SUPPORTED.get(
            hf_name, "tensor names, weight transforms and metadata keys for its GGUF form"
        )
        raise ConvertError(
            config_path,
            f"unsupported architecture {hf_name!r}: mfc has no conversion entry for it ({why})",
            hint="`mfc convert --list-architectures` lists the supported ones: "
            + ", ".join(SUPPORTED),
        )
    return arch
