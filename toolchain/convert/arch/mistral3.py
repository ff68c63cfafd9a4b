"""Ministral3ForCausalLM, and Mistral3ForConditionalGeneration's language model -> GGUF
"mistral3" (Mistral Small 3.x, Ministral 3, Devstral; the Pixtral vision tower and
projector are left out).

The language model is Llama's (Q/K permuted for llama.cpp's normal RoPE). Ministral 3's
YaRN adds two settings llama.cpp reads: the log multiplier of YaRN's attention factor
(`mscale_all_dim`) and Llama 4's position-dependent query scaling beta.
Mistral 4 (`text_config.model_type` "mistral4", DeepSeek-style MLA and experts) shares
the Hugging Face names and is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolchain.convert.arch import decoder
from toolchain.convert.arch.dense import write_llama
from toolchain.convert.arch.text import PERMUTE_QK, text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Mistral 4's language model (same HF names, text_config lifted) refused by name."""
    view = config
    if view.get("model_type") == "mistral4":
        raise ValueError(
            "Mistral 4 (text_config.model_type 'mistral4': MLA attention and "
            "routed experts) is not supported: mfc's mistral3 entry converts "
            "Mistral Small 3 / Ministral 3 only"
        )
    return view


def _metadata(h: HParams, md: Metadata) -> None:
    write_llama(h, md)
    rope = decoder.rope_parameters(h)
    if h.get("model_type", default=None) == "ministral3" and rope.get("rope_type") == "yarn":
        md.f32("{arch}.rope.scaling.yarn_log_multiplier", float(rope["mscale_all_dim"]))
        md.f32("{arch}.attention.temperature_scale", float(rope["llama_4_scaling_beta"]))


ARCH = text_arch(
    ("Ministral3ForCausalLM", "Mistral3ForConditionalGeneration"),
    "mistral3",
    family="Mistral 3 / Ministral 3 (text)",
    metadata=_metadata,
    transforms=PERMUTE_QK,
    text_part=True,
    config_view=_text_config,
)
