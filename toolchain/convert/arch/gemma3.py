"""Gemma3ForCausalLM (text) -> GGUF "gemma3"; Gemma3TextModel (EmbeddingGemma) ->
"gemma-embedding" with its sentence-transformers Dense projections.

Gemma's RMSNorm scales by (1 + w), llama.cpp's by w: every norm weight gets +1. The
embedding matrix is cut to the tokenizer's real vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.architecture import Architecture, HParams, Shape
from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata

_NORMS = (
    "output_norm.weight",
    "blk.{bid}.attn_norm.weight",
    "blk.{bid}.attn_q_norm.weight",
    "blk.{bid}.attn_k_norm.weight",
    "blk.{bid}.post_attention_norm.weight",
    "blk.{bid}.ffn_norm.weight",
    "blk.{bid}.post_ffw_norm.weight",
)


def _plus_one(w: np.ndarray, _h: HParams) -> np.ndarray:
    return w + np.float32(1.0)


def _head_dim(h: HParams) -> int:
    return h.int("head_dim", default=256)


def _sliding_layers(h: HParams) -> list[bool] | None:
    """Which layers use the sliding window, when config.json says so per layer."""
    kinds = h.get("layer_types", default=None)
    if not isinstance(kinds, list):
        return None
    return [kind == "sliding_attention" for kind in kinds]


def _metadata(h: HParams, md: Metadata) -> None:
    rope = decoder.rope_parameters(h)
    params = h.get("rope_parameters", default={})
    local = params.get("sliding_attention", {}) if isinstance(params, dict) else {}
    n_layer = h.int("num_hidden_layers")
    md.u32("{arch}.block_count", n_layer)
    md.u32("{arch}.context_length", h.int("max_position_embeddings", default=131072))
    md.u32("{arch}.embedding_length", decoder.n_embd(h))
    md.u32("{arch}.feed_forward_length", decoder.n_ff(h))
    md.u32("{arch}.attention.head_count", h.int("num_attention_heads", default=8))
    md.u32("{arch}.attention.head_count_kv", h.int("num_key_value_heads", default=4))
    md.f32("{arch}.attention.layer_norm_rms_epsilon", h.float("rms_norm_eps", default=1e-6))
    md.u32("{arch}.attention.key_length", _head_dim(h))
    md.u32("{arch}.attention.value_length", _head_dim(h))
    md.f32("{arch}.rope.freq_base", float(rope.get("rope_theta", 1_000_000.0)))
    local_base = local.get("rope_theta", h.get("rope_local_base_freq", default=None))
    if local_base is not None:
        md.f32("{arch}.rope.freq_base_swa", float(local_base))
    softcap = h.get("final_logit_softcapping", default=None)
    if softcap:
        md.f32("{arch}.final_logit_softcapping", float(softcap))
    if h.get("sliding_window_pattern", default=None) != 1:
        md.u32("{arch}.attention.sliding_window", h.int("sliding_window"))
        sliding = _sliding_layers(h)
        # llama.cpp assumes 5 sliding layers then 1 global; say so only when it differs.
        # A Gemma 3 without any sliding layer does not load in llama.cpp (it asserts one):
        # then, like the reference, nothing is written and llama.cpp's pattern applies
        if (
            sliding is not None
            and any(sliding)
            and sliding != [(i + 1) % 6 != 0 for i in range(n_layer)]
        ):
            md.bools("{arch}.attention.sliding_window_pattern", sliding)


def _q(h: HParams) -> int:
    return h.int("num_attention_heads", default=8) * _head_dim(h)


def _kv(h: HParams) -> int:
    return h.int("num_key_value_heads", default=4) * _head_dim(h)


_SHAPES: dict[str, Shape] = {
    **decoder.SHAPES,
    "blk.{bid}.attn_q.weight": lambda h: (_q(h), decoder.n_embd(h)),
    "blk.{bid}.attn_k.weight": lambda h: (_kv(h), decoder.n_embd(h)),
    "blk.{bid}.attn_v.weight": lambda h: (_kv(h), decoder.n_embd(h)),
    "blk.{bid}.attn_output.weight": lambda h: (decoder.n_embd(h), _q(h)),
    "blk.{bid}.attn_q_norm.weight": lambda h: (_head_dim(h),),
    "blk.{bid}.attn_k_norm.weight": lambda h: (_head_dim(h),),
    "blk.{bid}.post_attention_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.post_ffw_norm.weight": lambda h: (decoder.n_embd(h),),
}

ARCH = Architecture(
    family="Gemma 3 (text)",
    hf_names=("Gemma3ForCausalLM",),
    gguf_arch="gemma3",
    tensors={
        **decoder.TENSORS,
        "model.layers.{bid}.self_attn.q_norm": "blk.{bid}.attn_q_norm",
        "model.layers.{bid}.self_attn.k_norm": "blk.{bid}.attn_k_norm",
        "model.layers.{bid}.post_attention_layernorm": "blk.{bid}.post_attention_norm",
        "model.layers.{bid}.pre_feedforward_layernorm": "blk.{bid}.ffn_norm",
        "model.layers.{bid}.post_feedforward_layernorm": "blk.{bid}.post_ffw_norm",
    },
    skip=decoder.SKIP,
    shapes=_SHAPES,
    transforms=dict.fromkeys(_NORMS, _plus_one),
    metadata=_metadata,
    vocab=("spm", "bpe"),
    truncate_vocab=True,
)


def _dense_modules(h: HParams) -> dict[str, tuple[int, int, Path]]:
    """sentence-transformers' Dense modules (EmbeddingGemma's 2_Dense and 3_Dense): GGUF
    name -> (in features, out features, weights file), read from modules.json."""
    root = h.path.parent
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, tuple[int, int, Path]] = {}
    for module in modules if isinstance(modules, list) else []:
        path = str(module.get("path", "")) if isinstance(module, dict) else ""
        if not str(module.get("type", "")).endswith(".Dense") or path not in _DENSE:
            continue
        weights = root / path / "model.safetensors"
        config = json.loads((root / path / "config.json").read_text(encoding="utf-8"))
        if weights.is_file():
            found[_DENSE[path]] = (int(config["in_features"]), int(config["out_features"]), weights)
    return found


#: sentence-transformers module folder -> llama.cpp's tensor and key prefix
_DENSE = {"2_Dense": "dense_2", "3_Dense": "dense_3"}


def _embedding_metadata(h: HParams, md: Metadata) -> None:
    _metadata(h, md)
    for name, (n_in, n_out, _file) in sorted(_dense_modules(h).items()):
        md.u32("{arch}." + name + "_feat_in", n_in)
        md.u32("{arch}." + name + "_feat_out", n_out)


def _dense_tensors(h: HParams) -> dict[str, np.ndarray]:
    """The Dense modules' weights ([out, in]), applied by llama.cpp after pooling."""
    from safetensors.numpy import load_file

    out = {}
    for name, (n_in, n_out, weights) in _dense_modules(h).items():
        tensors = load_file(str(weights))
        weight = tensors.get("linear.weight")
        if weight is None or weight.shape != (n_out, n_in) or len(tensors) != 1:
            raise ConvertError(
                weights,
                f"expected only linear.weight [{n_out}, {n_in}] (a Dense module without bias)",
            )
        out[name + ".weight"] = weight.astype(np.float32)
    return out


#: EmbeddingGemma: Gemma 3's text stack attending both ways, mean pooling, then the
#: sentence-transformers Dense projections (as llama.cpp's converter writes them with
#: --sentence-transformers-dense-modules, and Ollama's always)
EMBEDDING = replace(
    ARCH,
    family="EmbeddingGemma",
    hf_names=("Gemma3TextModel",),
    gguf_arch="gemma-embedding",
    metadata=_embedding_metadata,
    renames=((r"^(layers|embed_tokens|norm)\.", r"model.\1."),),
    extra_tensors=_dense_tensors,
)
