"""What the Llama-style decoders (llama, qwen2, qwen3, gemma3) share: names, shapes, keys."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from toolchain.convert.architecture import HParams, Shape
from toolchain.convert.metadata import Metadata

TENSORS: dict[str, str] = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",
    "model.layers.{bid}.input_layernorm": "blk.{bid}.attn_norm",
    "model.layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
    "model.layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
    "model.layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
    "model.layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
    "model.layers.{bid}.post_attention_layernorm": "blk.{bid}.ffn_norm",
    "model.layers.{bid}.mlp.gate_proj": "blk.{bid}.ffn_gate",
    "model.layers.{bid}.mlp.up_proj": "blk.{bid}.ffn_up",
    "model.layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
}

SKIP: tuple[str, ...] = (
    r".*\.rotary_emb\.inv_freq",
    r".*\.attention\.masked_bias",
    r".*\.attention\.bias",
)


def n_embd(h: HParams) -> int:
    return h.int("hidden_size", "n_embd", "dim")


def n_head(h: HParams) -> int:
    return h.int("num_attention_heads", "n_head", "n_heads")


def n_head_kv(h: HParams) -> int:
    return h.int("num_key_value_heads", "n_kv_heads", default=n_head(h))


def head_dim(h: HParams) -> int:
    return h.int("head_dim", default=n_embd(h) // n_head(h))


def n_ff(h: HParams) -> int:
    return h.int("intermediate_size", "n_inner", "hidden_dim")


def n_vocab(h: HParams) -> int:
    return h.int("vocab_size")


def _q(h: HParams) -> int:
    return n_head(h) * head_dim(h)


def _kv(h: HParams) -> int:
    return n_head_kv(h) * head_dim(h)


SHAPES: dict[str, Shape] = {
    "token_embd.weight": lambda h: (n_vocab(h), n_embd(h)),
    "output.weight": lambda h: (n_vocab(h), n_embd(h)),
    "output_norm.weight": lambda h: (n_embd(h),),
    "blk.{bid}.attn_norm.weight": lambda h: (n_embd(h),),
    "blk.{bid}.ffn_norm.weight": lambda h: (n_embd(h),),
    "blk.{bid}.attn_q.weight": lambda h: (_q(h), n_embd(h)),
    "blk.{bid}.attn_q.bias": lambda h: (_q(h),),
    "blk.{bid}.attn_k.weight": lambda h: (_kv(h), n_embd(h)),
    "blk.{bid}.attn_k.bias": lambda h: (_kv(h),),
    "blk.{bid}.attn_v.weight": lambda h: (_kv(h), n_embd(h)),
    "blk.{bid}.attn_v.bias": lambda h: (_kv(h),),
    "blk.{bid}.attn_output.weight": lambda h: (n_embd(h), _q(h)),
    "blk.{bid}.ffn_gate.weight": lambda h: (n_ff(h), n_embd(h)),
    "blk.{bid}.ffn_up.weight": lambda h: (n_ff(h), n_embd(h)),
    "blk.{bid}.ffn_down.weight": lambda h: (n_embd(h), n_ff(h)),
}


def rope_parameters(h: HParams) -> dict[str, Any]:
    """RoPE settings wherever transformers put them (rope_scaling, rope_parameters, top level)."""
    params: dict[str, Any] = {}
    for key in ("rope_scaling", "rope_parameters"):
        value = h.config.get(key)
        if isinstance(value, dict):
            # transformers 5 nests per attention kind for hybrid models
            params.update(value.get("full_attention", value))
    if "rope_theta" in h.config:
        params.setdefault("rope_theta", h.config["rope_theta"])
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params["type"]
    return params


def write_common(h: HParams, md: Metadata) -> None:
    """The keys every decoder writes, in llama.cpp's converter order (its TextModel)."""
    md.u32("{arch}.block_count", h.int("num_hidden_layers", "n_layer", "n_layers"))
    md.u32("{arch}.context_length", h.int("max_position_embeddings", "n_ctx", "n_positions"))
    md.u32("{arch}.embedding_length", n_embd(h))
    md.u32(
        "{arch}.feed_forward_length",
        h.int(
            "prefix_dense_intermediate_size",
            "dense_intermediate_size",
            "intermediate_size",
            "n_inner",
            "hidden_dim",
        ),
    )
    md.u32("{arch}.attention.head_count", n_head(h))
    if h.get("num_key_value_heads", "n_kv_heads", default=None) is not None:
        md.u32("{arch}.attention.head_count_kv", n_head_kv(h))
    rope = rope_parameters(h)
    kind = str(rope.get("rope_type", "default")).lower()
    factor = rope.get("factor")
    if kind in ("linear", "yarn") and factor is not None:
        md.string("{arch}.rope.scaling.type", kind)
        md.f32("{arch}.rope.scaling.factor", float(factor))
        if kind == "yarn":
            md.u32(
                "{arch}.rope.scaling.original_context_length",
                int(rope["original_max_position_embeddings"]),
            )
            for key, gguf_key in (
                ("extrapolation_factor", "yarn_ext_factor"),
                ("attention_factor", "yarn_attn_factor"),
                ("attn_factor", "yarn_attn_factor"),
                ("beta_fast", "yarn_beta_fast"),
                ("beta_slow", "yarn_beta_slow"),
            ):
                if rope.get(key) is not None:
                    md.f32("{arch}.rope.scaling." + gguf_key, float(rope[key]))
    if rope.get("rope_theta") is not None:
        md.f32("{arch}.rope.freq_base", float(rope["rope_theta"]))
    rms = h.get("rms_norm_eps", "norm_eps", default=None)
    norm = h.get("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", default=None)
    if rms is None and norm is None:
        h.float("rms_norm_eps", "layer_norm_eps")  # raises: names the missing key
    if rms is not None:
        md.f32("{arch}.attention.layer_norm_rms_epsilon", float(rms))
    if norm is not None:
        md.f32("{arch}.attention.layer_norm_epsilon", float(norm))
    experts = h.get("num_local_experts", "num_experts", "n_routed_experts", default=None)
    if experts is not None:
        md.u32("{arch}.expert_count", int(experts))
    used = h.get("num_experts_per_tok", "num_experts_per_token", default=None)
    if used is not None:
        md.u32("{arch}.expert_used_count", int(used))
    groups = h.get("n_group", default=None)
    if groups is not None:
        md.u32("{arch}.expert_group_count", int(groups))
    groups_used = h.get("topk_group", default=None)
    if groups_used is not None:
        md.u32("{arch}.expert_group_used_count", int(groups_used))
    if h.get("head_dim", default=None) is not None:
        md.u32("{arch}.attention.key_length", head_dim(h))
        md.u32("{arch}.attention.value_length", head_dim(h))


def llama3_rope_factors(h: HParams) -> dict[str, np.ndarray]:
    """`rope_freqs.weight` for Llama 3.1-style frequency scaling (rope_type "llama3").

    llama.cpp divides each rotary frequency by its factor: 1 for short wavelengths,
    `factor` for long ones, and a smooth blend in between.
    """
    rope = rope_parameters(h)
    if str(rope.get("rope_type", "")).lower() != "llama3":
        return {}
    base = float(rope.get("rope_theta", 10000.0))
    dim = head_dim(h)
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    factors = np.where(
        wavelen < old_ctx / high,
        1.0,
        np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)),
    )
    return {"rope_freqs.weight": factors.astype(np.float32)}


def permute_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Rotate-half row order (HF) -> interleaved pairs (llama.cpp's normal RoPE), per head."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
