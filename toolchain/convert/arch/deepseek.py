"""DeepseekV3ForCausalLM -> "deepseek2": multi-head latent attention (MLA) and
DeepSeek MoE.

llama.cpp runs MLA in its absorbed form: the joint key/value up-projection kv_b_proj
[heads * (nope + v), kv_rank] is cut per head into attn_k_b (transposed, [heads,
kv_rank, nope]) and attn_v_b ([heads, v, kv_rank]), and attention is announced as one
KV head with key length kv_rank + rope dims. Multi-token-prediction blocks after the
model's own layers are not converted.
"""

from __future__ import annotations

from dataclasses import replace

import gguf
import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Split
from toolchain.convert.metadata import Metadata


def _dims(h: HParams) -> tuple[int, int, int]:
    return (
        h.int("num_key_value_heads", "num_attention_heads"),
        h.int("qk_nope_head_dim"),
        h.int("v_head_dim"),
    )


def _per_head(w: np.ndarray, h: HParams) -> tuple[np.ndarray, np.ndarray]:
    heads, nope, v = _dims(h)
    kv_b = w.reshape(heads, nope + v, w.shape[-1])
    return kv_b[:, :nope, :], kv_b[:, nope:, :]


def _k_b(w: np.ndarray, h: HParams) -> np.ndarray:
    return np.ascontiguousarray(_per_head(w, h)[0].transpose(0, 2, 1))


def _v_b(w: np.ndarray, h: HParams) -> np.ndarray:
    return np.ascontiguousarray(_per_head(w, h)[1])


def _k_b_shape(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
    heads, nope, _v = _dims(h)
    return heads, shape[-1], nope


def _v_b_shape(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
    heads, _nope, v = _dims(h)
    return heads, v, shape[-1]


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    md.u32("{arch}.attention.head_count_kv", 1)  # MLA runs as MQA over the latent
    md.f32("{arch}.attention.layer_norm_rms_epsilon", h.float("rms_norm_eps", default=1e-6))
    routed = h.get("n_routed_experts", default=None)
    md.u32(
        "{arch}.leading_dense_block_count",
        h.int(
            "first_k_dense_replace", default=0 if routed is not None else h.int("num_hidden_layers")
        ),
    )
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    q_rank = h.get("q_lora_rank", default=None)
    if q_rank is not None:
        md.u32("{arch}.attention.q_lora_rank", int(q_rank))
    kv_rank = h.int("kv_lora_rank", default=512)
    rope_dim = h.int("qk_rope_head_dim")
    md.u32("{arch}.attention.kv_lora_rank", kv_rank)
    md.u32("{arch}.attention.key_length", kv_rank + rope_dim)
    md.u32("{arch}.attention.value_length", kv_rank)
    md.u32("{arch}.attention.key_length_mla", h.int("qk_nope_head_dim") + rope_dim)
    md.u32("{arch}.attention.value_length_mla", h.int("v_head_dim"))
    md.u32("{arch}.expert_feed_forward_length", h.int("moe_intermediate_size", "intermediate_size"))
    if routed is not None:
        md.u32("{arch}.expert_count", int(routed))
    md.u32("{arch}.expert_shared_count", h.int("n_shared_experts", default=0))
    scale = h.get("routed_scaling_factor", default=None)
    if scale is not None:
        md.f32("{arch}.expert_weights_scale", float(scale))
    if h.get("norm_topk_prob", default=False):
        md.boolean("{arch}.expert_weights_norm", True)
    md.u32("{arch}.rope.dimension_count", rope_dim)
    scoring = h.get("scoring_func", default=None)
    if scoring is not None:
        md.u32(
            "{arch}.expert_gating_func",
            int(
                gguf.ExpertGatingFuncType.SIGMOID
                if scoring == "sigmoid"
                else gguf.ExpertGatingFuncType.SOFTMAX
            ),
        )
    mscale_all = decoder.rope_parameters(h).get("mscale_all_dim")
    if mscale_all is not None:
        md.f32("{arch}.rope.scaling.yarn_log_multiplier", 0.1 * float(mscale_all))


ARCH = text_arch(
    ("DeepseekV3ForCausalLM",),
    "deepseek2",
    family="DeepSeek-V3",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={},
    uniform_blocks=False,
    extra_blocks_key="num_nextn_predict_layers",
    splits={
        "blk.{bid}.attn_kv_b.weight": (
            Split("blk.{bid}.attn_k_b.weight", _k_b_shape, _k_b),
            Split("blk.{bid}.attn_v_b.weight", _v_b_shape, _v_b),
        )
    },
)


def _glm_lite_metadata(h: HParams, md: Metadata) -> None:
    """GLM-4.7-Flash: DeepSeek's MLA and MoE, its dense blocks given as mlp_layer_types and
    its routing always sigmoid (the config names neither as DeepSeek does)."""
    kinds = h.get("mlp_layer_types", default=None)
    config = dict(h.config)
    config.setdefault("scoring_func", "sigmoid")
    if isinstance(kinds, list) and config.get("first_k_dense_replace") is None:
        dense = next((i for i, kind in enumerate(kinds) if kind != "dense"), len(kinds))
        config["first_k_dense_replace"] = dense
    _metadata(HParams(config, h.path), md)


GLM4_MOE_LITE = replace(
    ARCH,
    hf_names=("Glm4MoeLiteForCausalLM",),
    family="GLM-4 MoE Lite",
    metadata=_glm_lite_metadata,
    special_tokens={
        "bos": "[gMASK]",
        "eot": "<|user|>",
        "unk": "<|endoftext|>",
        "eom": "<|observation|>",
    },
)
