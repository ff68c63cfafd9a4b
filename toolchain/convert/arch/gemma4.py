"""Gemma4ForCausalLM and Gemma4ForConditionalGeneration (its language model) -> "gemma4".

What Gemma 4 adds to Gemma 3, and how llama.cpp is told:

- norms scale by w, not 1 + w: no weight is shifted; every layer ends with a learned
  scalar (`layer_output_scale`);
- two kinds of attention layer with their own head size, KV heads and RoPE: sliding
  ones (head_dim, all dimensions rotated, `*_swa` keys) and full ones (global_head_dim,
  "proportional" RoPE rotating only partial_rotary_factor of it). llama.cpp rotates a
  full head and divides the frequencies of the unrotated pairs by 1e30
  (`rope_freqs.weight`, used by the full layers only); values are RMS-normed without a
  weight; with attention_k_eq_v a full layer has no v_proj and reuses its keys;
- per-layer embeddings (E2B/E4B): a second token embedding sliced per layer and a
  projection of the input, gated into each layer's output;
- the last num_kv_shared_layers layers reuse the keys and values of the last earlier
  layer of their kind and have no K/V weights; with use_double_wide_mlp their MLPs are
  twice as wide (feed_forward_length per layer);
- mixture of experts (26B-A4B): a routed expert block beside the dense MLP, with its own
  norms, a router input scale (`ffn_gate_inp.scale`) and a per-expert output scale
  (`ffn_down_exps.scale`);
- the tokenizer: tokenizer.json's BPE as llama.cpp's "gemma4" model (vocab/spm_bpe.py).

The per-layer embedding here is Gemma 4's own (llama.cpp's gemma3n names it the same
way but has AltUp and LAuReL around it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Shape
from toolchain.convert.metadata import Metadata

_FULL, _SLIDING = "full_attention", "sliding_attention"


def _sliding(h: HParams) -> list[bool]:
    return [kind == _SLIDING for kind in h.get("layer_types")]


def _full_layer(h: HParams, key: str) -> Any:
    """`key` of the first full-attention layer in per_layer_config (transformers 5's
    spelling of global_head_dim and num_global_key_value_heads), or None."""
    per_layer = h.get("per_layer_config", default={})
    kinds = h.get("layer_types")
    for index, overrides in sorted(per_layer.items(), key=lambda kv: int(kv[0])):
        i = int(index)
        if i < len(kinds) and kinds[i] == _FULL and key in overrides:
            return overrides[key]
    return None


def _head_dim_full(h: HParams) -> int:
    value = h.get("global_head_dim", default=None) or _full_layer(h, "head_dim")
    return int(value) if value is not None else h.int("head_dim")


def _rope(h: HParams, kind: str) -> dict[str, Any]:
    params = h.get("rope_parameters", default={})
    value = params.get(kind, {}) if isinstance(params, dict) else {}
    return value if isinstance(value, dict) else {}


def _metadata(h: HParams, md: Metadata) -> None:
    n_layer = h.int("num_hidden_layers")
    sliding = _sliding(h)
    head_full, head_swa = _head_dim_full(h), h.int("head_dim")
    n_shared = h.int("num_kv_shared_layers", default=0)
    md.u32("{arch}.block_count", n_layer)
    md.u32("{arch}.context_length", h.int("max_position_embeddings", default=131072))
    md.u32("{arch}.embedding_length", decoder.n_embd(h))
    n_ff = decoder.n_ff(h)
    if h.get("use_double_wide_mlp", default=False):
        # the KV-sharing layers' MLPs are twice as wide
        md.i32s(
            "{arch}.feed_forward_length",
            [n_ff if i < n_layer - n_shared else 2 * n_ff for i in range(n_layer)],
        )
    else:
        md.u32("{arch}.feed_forward_length", n_ff)
    md.u32("{arch}.attention.head_count", decoder.n_head(h))
    n_kv = h.int("num_key_value_heads", default=4)
    kv_full = h.get("num_global_key_value_heads", default=None) or _full_layer(
        h, "num_key_value_heads"
    )
    if kv_full is not None:
        md.i32s("{arch}.attention.head_count_kv", [n_kv if s else int(kv_full) for s in sliding])
    else:
        md.u32("{arch}.attention.head_count_kv", n_kv)
    md.f32("{arch}.rope.freq_base", float(_rope(h, _FULL).get("rope_theta", 1_000_000.0)))
    if _rope(h, _SLIDING).get("rope_theta") is not None:
        md.f32("{arch}.rope.freq_base_swa", float(_rope(h, _SLIDING)["rope_theta"]))
    md.f32("{arch}.attention.layer_norm_rms_epsilon", h.float("rms_norm_eps", default=1e-6))
    if h.get("num_experts", default=None) is not None:
        md.u32("{arch}.expert_count", h.int("num_experts"))
    if h.get("top_k_experts", default=None) is not None:
        md.u32("{arch}.expert_used_count", h.int("top_k_experts"))
    md.u32("{arch}.attention.key_length", head_full)
    md.u32("{arch}.attention.value_length", head_full)
    # llama.cpp caps Gemma 4's logits at 30 unless told otherwise: 0 turns it off
    md.f32("{arch}.final_logit_softcapping", float(h.get("final_logit_softcapping", default=0.0)))
    md.u32("{arch}.attention.sliding_window", h.int("sliding_window"))
    md.u32("{arch}.attention.shared_kv_layers", n_shared)
    md.u32("{arch}.embedding_length_per_layer_input", _n_per_layer(h))
    md.bools("{arch}.attention.sliding_window_pattern", sliding)
    md.u32("{arch}.attention.key_length_swa", head_swa)
    md.u32("{arch}.attention.value_length_swa", head_swa)
    n_ff_exp = h.get("expert_intermediate_size", "moe_intermediate_size", default=None)
    if n_ff_exp is not None:
        md.u32("{arch}.expert_feed_forward_length", int(n_ff_exp))
    # the full layers rotate a whole head (see _rope_freqs); the sliding ones their part
    md.u32("{arch}.rope.dimension_count", head_full)
    partial_swa = float(_rope(h, _SLIDING).get("partial_rotary_factor", 1.0))
    md.u32("{arch}.rope.dimension_count_swa", int(head_swa * partial_swa))


def _n_per_layer(h: HParams) -> int:
    return h.int("hidden_size_per_layer_input", default=0) or 0


def _rope_freqs(h: HParams) -> dict[str, np.ndarray]:
    """Frequency divisors for the full layers' proportional RoPE: 1 for the rotated
    pairs, 1e30 (no rotation) for the rest, as llama.cpp's rotation of the whole head
    otherwise turns every pair."""
    if _FULL not in h.get("layer_types"):
        return {}
    half = _head_dim_full(h) // 2
    rotated = int(_head_dim_full(h) * float(_rope(h, _FULL).get("partial_rotary_factor", 1.0)) / 2)
    factors = np.full(half, 1e30, dtype=np.float32)
    factors[:rotated] = 1.0
    return {"rope_freqs.weight": factors}


def _per_layer_width(h: HParams) -> int:
    return h.int("num_hidden_layers") * _n_per_layer(h)


def _n_ff_exp(h: HParams) -> int:
    return h.int("moe_intermediate_size")


#: the shapes every block shares (attention and MLP widths differ by layer kind)
_SHAPES: dict[str, Shape] = {
    "token_embd.weight": lambda h: (decoder.n_vocab(h), decoder.n_embd(h)),
    "output_norm.weight": lambda h: (decoder.n_embd(h),),
    "per_layer_token_embd.weight": lambda h: (
        h.int("vocab_size_per_layer_input"),
        _per_layer_width(h),
    ),
    "per_layer_model_proj.weight": lambda h: (_per_layer_width(h), decoder.n_embd(h)),
    "per_layer_proj_norm.weight": lambda h: (_n_per_layer(h),),
    "blk.{bid}.attn_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.post_attention_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.ffn_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.post_ffw_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.layer_output_scale.weight": lambda _h: (1,),
    "blk.{bid}.inp_gate.weight": lambda h: (_n_per_layer(h), decoder.n_embd(h)),
    "blk.{bid}.proj.weight": lambda h: (decoder.n_embd(h), _n_per_layer(h)),
    "blk.{bid}.post_norm.weight": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.ffn_gate_inp.weight": lambda h: (h.int("num_experts"), decoder.n_embd(h)),
    "blk.{bid}.ffn_gate_inp.scale": lambda h: (decoder.n_embd(h),),
    "blk.{bid}.ffn_gate_up_exps.weight": lambda h: (
        h.int("num_experts"),
        2 * _n_ff_exp(h),
        decoder.n_embd(h),
    ),
    "blk.{bid}.ffn_down_exps.weight": lambda h: (
        h.int("num_experts"),
        decoder.n_embd(h),
        _n_ff_exp(h),
    ),
    "blk.{bid}.ffn_down_exps.scale": lambda h: (h.int("num_experts"),),
}

#: tensors saved without a .weight suffix, and the router's scales, under the names
#: gguf-py's table maps (router.scale -> ffn_gate_inp.scale, per_expert_scale ->
#: ffn_down_exps.scale)
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"\.layer_scalar$", ".layer_scalar.weight"),
    (r"\.router\.scale$", ".router.proj.scale"),
    (r"\.router\.per_expert_scale$", ".experts.down_proj.scale"),
    (r"\.experts\.(gate_up_proj|down_proj)$", r".experts.\1.weight"),
)


def _config_view(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """config.json as it is, unless llama.cpp could not load the result: it reads the
    per-layer embedding with one row per token, as the token embedding."""
    rows, n_vocab = config.get("vocab_size_per_layer_input"), config.get("vocab_size")
    if config.get("hidden_size_per_layer_input") and rows is not None and rows != n_vocab:
        raise ValueError(
            f"vocab_size_per_layer_input ({rows}) differs from vocab_size ({n_vocab}); "
            "llama.cpp's gemma4 needs a per-layer embedding row for every token"
        )
    return config


def _gemma4(hf_names: tuple[str, ...], family: str, *, text_part: bool) -> Any:
    return text_arch(
        hf_names,
        "gemma4",
        family=family,
        metadata=_metadata,
        vocab=("gemma4",),
        shapes=_SHAPES,
        skip=(r"(model\.)?(embed_vision|embed_audio|audio_tower)\..*",),
        renames=_RENAMES,
        extra_tensors=_rope_freqs,
        # the KV-sharing layers have no K/V weights
        uniform_blocks=False,
        truncate_vocab=True,
        text_part=text_part,
        config_view=_config_view,
    )


ARCH = _gemma4(("Gemma4ForCausalLM",), "Gemma 4", text_part=False)
VLM = _gemma4(("Gemma4ForConditionalGeneration",), "Gemma 4 (vision: text model)", text_part=True)
