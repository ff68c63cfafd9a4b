"""Mixture-of-experts decoders whose checkpoints store one tensor per expert; the
converter stacks them into `ffn_{gate,up,down}_exps` (see plan_tensors).

- MixtralForCausalLM -> "llama" with experts (Llama's Q/K permutation).
- Qwen2MoeForCausalLM -> "qwen2moe": routed experts plus a gated shared expert;
  llama.cpp has no tied-embedding fallback for it, so a tied head is written out.
- Qwen3MoeForCausalLM -> "qwen3moe": Qwen3's Q/K norms, routed experts only.
- Glm4MoeForCausalLM -> "glm4moe": dense leading blocks, sigmoid routing with a score
  correction bias, shared experts, partial RoPE; GLM's special tokens by text.
"""

from __future__ import annotations

import gguf

from toolchain.convert.arch import decoder
from toolchain.convert.arch.dense import write_llama
from toolchain.convert.arch.text import PERMUTE_QK, text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata

_ATTENTION = {k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k}


def write_qwen_moe(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    ff = h.get("moe_intermediate_size", default=None)
    if ff is not None:
        md.u32("{arch}.expert_feed_forward_length", int(ff))
    shared = h.get("shared_expert_intermediate_size", default=None)
    if shared is not None:
        md.u32("{arch}.expert_shared_feed_forward_length", int(shared))


MIXTRAL = text_arch(
    ("MixtralForCausalLM",),
    "llama",
    family="Mixtral",
    metadata=write_llama,
    transforms=PERMUTE_QK,
    shapes=_ATTENTION,
)
QWEN2MOE = text_arch(
    ("Qwen2MoeForCausalLM",),
    "qwen2moe",
    family="Qwen2-MoE",
    metadata=write_qwen_moe,
    shapes=_ATTENTION,
    output_required=True,
)
QWEN3MOE = text_arch(
    ("Qwen3MoeForCausalLM",),
    "qwen3moe",
    family="Qwen3-MoE",
    metadata=write_qwen_moe,
    shapes=_ATTENTION,
)


def _write_glm4moe(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    rope = decoder.rope_parameters(h)
    md.u32(
        "{arch}.rope.dimension_count",
        int(decoder.head_dim(h) * float(rope.get("partial_rotary_factor", 0.5))),
    )
    _write_routed_experts(h, md)
    if h.get("num_nextn_predict_layers", default=None) is not None:
        # the multi-token-prediction blocks past num_hidden_layers are not converted
        md.u32("{arch}.nextn_predict_layers", 0)


def _write_routed_experts(h: HParams, md: Metadata) -> None:
    """DeepSeek-style routing: shared experts, leading dense blocks, sigmoid scores."""
    md.u32("{arch}.expert_count", h.int("n_routed_experts"))
    md.u32("{arch}.expert_feed_forward_length", h.int("moe_intermediate_size"))
    md.u32("{arch}.expert_shared_count", h.int("n_shared_experts"))
    md.u32("{arch}.leading_dense_block_count", h.int("first_k_dense_replace"))
    md.u32("{arch}.expert_gating_func", int(gguf.ExpertGatingFuncType.SIGMOID))
    scale = h.get("routed_scaling_factor", default=None)
    if scale is not None:
        md.f32("{arch}.expert_weights_scale", float(scale))
    norm = h.get("norm_topk_prob", default=None)
    if norm is not None:
        md.boolean("{arch}.expert_weights_norm", bool(norm))


GLM4MOE = text_arch(
    ("Glm4MoeForCausalLM",),
    "glm4moe",
    family="GLM-4 MoE",
    metadata=_write_glm4moe,
    vocab=("bpe",),
    shapes=_ATTENTION,
    uniform_blocks=False,
    extra_blocks_key="num_nextn_predict_layers",
    special_tokens={
        "bos": "[gMASK]",
        "eot": "<|user|>",
        "unk": "<|endoftext|>",
        "eom": "<|observation|>",
    },
)
