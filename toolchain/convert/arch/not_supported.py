"""Hugging Face architectures that the reference's converter (Ollama) takes and mfc does
not, with what is missing; `mfc convert` says this instead of a bare "unsupported"."""

from __future__ import annotations

_HYBRID = (
    "mfc has no entry yet for its {what} (the bundled llama.cpp runs it as "
    "{gguf}; transformers {transformers} has it)"
)
_NO_HF = (
    "transformers {transformers} has no class for it (remote code only), so mfc "
    "cannot check a conversion against it"
)

NOT_SUPPORTED: dict[str, str] = {
    "MllamaForConditionalGeneration": "the bundled llama.cpp (llama-cpp-python 0.3.36) "
    "has no mllama architecture (Llama 3.2 Vision's cross-attention layers)",
    "DeepseekOCRForCausalLM": _NO_HF.format(transformers="5.25"),
    "NemotronH_Nano_VL_V2": _NO_HF.format(transformers="5.25"),
    "NemotronH_Nano_Omni_Reasoning_V3": _NO_HF.format(transformers="5.25"),
    "NomicBertMoEModel": "no released checkpoint or converter uses this name: nomic's MoE "
    "models say NomicBertModel with moe_every_n_layers, which mfc converts",
}
