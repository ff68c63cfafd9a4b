"""Qwen's hybrid decoders: gated delta-net (linear attention) blocks, with a gated
full-attention block where config.json's layer_types says so (every 4th as released).

- Qwen3NextForCausalLM -> "qwen3next": every block's feed-forward is mixture-of-experts
  (routed experts plus a sigmoid-gated shared expert, Qwen2-MoE's layout). The delta-net's
  input projection comes fused per key head ([q, k, v, z] for each, `in_proj_qkvz`) and
  is written as llama.cpp reads it: Q, K and V of all heads (attn_qkv), then Z (attn_gate).

- Qwen3_5ForConditionalGeneration -> "qwen35" (its language model; Qwen3_5ForCausalLM's
  text-only checkpoints too): the same blocks with
  a dense feed-forward, the delta-net's projections stored apart (in_proj_qkv, _z, _b,
  _a), interleaved multimodal RoPE (sections written, Qwen3.5's default when the config
  has none). llama.cpp wants the value heads tiled instead of grouped under their key
  head: every value-head axis (V rows of QKV, Z, beta, alpha, A, dt, the convolution's
  V channels, the output projection's columns) is reordered, as its converter does.

- Qwen3_5MoeForConditionalGeneration -> "qwen35moe" (its language model; likewise
  Qwen3_5MoeForCausalLM): Qwen3.5's blocks with Qwen3-Next's mixture-of-experts
  feed-forward.

Experts come one tensor per expert (stacked) or fused across experts as transformers 5
holds them (`experts.gate_up_proj` [experts, 2 * ff, embd], gate then up; `down_proj`
[experts, embd, ff]), which is cut, never transposed, as llama.cpp's converter does.

What every entry here shares with llama.cpp's converter:
- RMSNorms scale by (1 + w), so their weights get +1; the delta-net's gated output norm
  scales by w and is kept;
- the decay rate is stored as its log: A_log -> A = -exp(A_log) (ssm_a);
- `dt_bias` is written as ssm_dt.bias, the depthwise convolution [channels, 1, K] as
  [channels, K];
- the full-attention query projection holds each head's query and output gate side by
  side ([q, gate] per head); llama.cpp reads that layout as it is;
- the multi-token-prediction block (`mtp.*`, a speculative-decoding head) is left out,
  as llama.cpp's converter does with --no-mtp.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.fused_experts import FUSED_RENAMES
from toolchain.convert.arch.moe import write_qwen_moe
from toolchain.convert.arch.text import norm_weights, plus_one, text_arch
from toolchain.convert.architecture import Architecture, HParams, Shape, Split, Transform
from toolchain.convert.metadata import Metadata

#: the multi-token-prediction block, at the top level or under model.
MTP = (r"(model\.)?mtp\..*",)


def _n_k(h: HParams) -> int:
    return h.int("linear_num_key_heads")


def _n_v(h: HParams) -> int:
    return h.int("linear_num_value_heads")


def _key_dim(h: HParams) -> int:
    return _n_k(h) * h.int("linear_key_head_dim")


def _value_dim(h: HParams) -> int:
    return _n_v(h) * h.int("linear_value_head_dim")


def _conv_dim(h: HParams) -> int:
    return 2 * _key_dim(h) + _value_dim(h)


def _embd(h: HParams) -> int:
    return decoder.n_embd(h)


#: the shapes config.json implies for the attention and delta-net tensors
SHAPES: dict[str, Shape] = {
    **{k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k and "attn_q." not in k},
    "blk.{bid}.post_attention_norm.weight": lambda h: (_embd(h),),
    # each head's query and its output gate
    "blk.{bid}.attn_q.weight": lambda h: (
        2 * decoder.n_head(h) * decoder.head_dim(h),
        _embd(h),
    ),
    "blk.{bid}.attn_q_norm.weight": lambda h: (decoder.head_dim(h),),
    "blk.{bid}.attn_k_norm.weight": lambda h: (decoder.head_dim(h),),
    "blk.{bid}.ssm_in.weight": lambda h: (2 * _key_dim(h) + 2 * _value_dim(h), _embd(h)),
    "blk.{bid}.ssm_ba.weight": lambda h: (2 * _n_v(h), _embd(h)),
    "blk.{bid}.attn_qkv.weight": lambda h: (_conv_dim(h), _embd(h)),
    "blk.{bid}.attn_gate.weight": lambda h: (_value_dim(h), _embd(h)),
    "blk.{bid}.ssm_beta.weight": lambda h: (_n_v(h), _embd(h)),
    "blk.{bid}.ssm_alpha.weight": lambda h: (_n_v(h), _embd(h)),
    "blk.{bid}.ssm_conv1d.weight": lambda h: (_conv_dim(h), 1, h.int("linear_conv_kernel_dim")),
    "blk.{bid}.ssm_a": lambda h: (_n_v(h),),
    "blk.{bid}.ssm_dt.bias": lambda h: (_n_v(h),),
    "blk.{bid}.ssm_norm.weight": lambda h: (h.int("linear_value_head_dim"),),
    "blk.{bid}.ssm_out.weight": lambda h: (_embd(h), _value_dim(h)),
}

DENSE_SHAPES = {k: v for k, v in decoder.SHAPES.items() if "ffn_" in k}


def _experts(h: HParams) -> int:
    return h.int("num_experts")


def _ff_exp(h: HParams) -> int:
    return h.int("moe_intermediate_size")


def _ff_shexp(h: HParams) -> int:
    return h.int("shared_expert_intermediate_size")


#: routed experts (stacked, or fused gate and up) and the gated shared expert
MOE_SHAPES: dict[str, Shape] = {
    "blk.{bid}.ffn_gate_inp.weight": lambda h: (_experts(h), _embd(h)),
    "blk.{bid}.ffn_gate_exps.weight": lambda h: (_experts(h), _ff_exp(h), _embd(h)),
    "blk.{bid}.ffn_up_exps.weight": lambda h: (_experts(h), _ff_exp(h), _embd(h)),
    "blk.{bid}.ffn_down_exps.weight": lambda h: (_experts(h), _embd(h), _ff_exp(h)),
    "blk.{bid}.ffn_gate_up_exps.weight": lambda h: (_experts(h), 2 * _ff_exp(h), _embd(h)),
    "blk.{bid}.ffn_gate_shexp.weight": lambda h: (_ff_shexp(h), _embd(h)),
    "blk.{bid}.ffn_up_shexp.weight": lambda h: (_ff_shexp(h), _embd(h)),
    "blk.{bid}.ffn_down_shexp.weight": lambda h: (_embd(h), _ff_shexp(h)),
    "blk.{bid}.ffn_gate_inp_shexp.weight": lambda h: (1, _embd(h)),
}


def _gate_or_up(index: int) -> Transform:
    def cut(w: np.ndarray, _h: HParams) -> np.ndarray:
        return np.ascontiguousarray(np.split(w, 2, axis=1)[index])

    return cut


def _half(shape: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
    return (shape[0], shape[1] // 2, shape[2])


#: experts fused across experts (transformers 5's layout, see the module docstring)
FUSED_EXPERT_SPLITS: dict[str, tuple[Split, ...]] = {
    "blk.{bid}.ffn_gate_up_exps.weight": (
        Split("blk.{bid}.ffn_gate_exps.weight", _half, _gate_or_up(0)),
        Split("blk.{bid}.ffn_up_exps.weight", _half, _gate_or_up(1)),
    )
}


def _decay(w: np.ndarray, _h: HParams) -> np.ndarray:
    """A_log -> A: llama.cpp multiplies the softplus'd step by A itself.

    Computed in float64 and rounded once, so correctly rounded. llama.cpp's converter uses
    torch's float32 exp, which is not always: its A can be one ulp away from this (the
    tiny fixtures agree exactly; a BF16 copy of them differs in a few heads)."""
    return (-np.exp(w.astype(np.float64))).astype(np.float32)


def transforms(gguf_arch: str) -> dict[str, Transform]:
    """+1 on every RMSNorm but the delta-net's gated one; A = -exp(A_log)."""
    norms = [n for n in norm_weights(gguf_arch) if n != "blk.{bid}.ssm_norm.weight"]
    return {**dict.fromkeys(norms, plus_one), "blk.{bid}.ssm_a": _decay}


def _tiled(w: np.ndarray, h: HParams, axis: int, start: int, width: int) -> np.ndarray:
    """Value heads (`width` wide, from `start` along `axis`) from grouped under their key
    head [k0: v0 v1, k1: v0 v1] to tiled [v0 of k0, k1; v1 of k0, k1]: llama.cpp repeats
    the key heads by tiling."""
    n_k = _n_k(h)
    x = np.moveaxis(w, axis, 0)
    part = x[start:]
    tiled = part.reshape(n_k, -1, width, *part.shape[1:]).swapaxes(0, 1).reshape(part.shape)
    return np.ascontiguousarray(np.moveaxis(np.concatenate([x[:start], tiled]), 0, axis))


def _v_rows(start: Callable[[HParams], int], width: Callable[[HParams], int]) -> Transform:
    return lambda w, h: _tiled(w, h, 0, start(h), width(h))


def _none(_h: HParams) -> int:
    return 0


def _one(_h: HParams) -> int:
    return 1


def _dv(h: HParams) -> int:
    return h.int("linear_value_head_dim")


def _qk(h: HParams) -> int:
    return 2 * _key_dim(h)


#: value heads tiled (Qwen3.5's delta-net tensors, see _tiled)
TILED_V_HEADS: dict[str, Transform] = {
    "blk.{bid}.attn_qkv.weight": _v_rows(_qk, _dv),
    "blk.{bid}.ssm_conv1d.weight": _v_rows(_qk, _dv),
    "blk.{bid}.attn_gate.weight": _v_rows(_none, _dv),
    "blk.{bid}.ssm_beta.weight": _v_rows(_none, _one),
    "blk.{bid}.ssm_alpha.weight": _v_rows(_none, _one),
    "blk.{bid}.ssm_dt.bias": _v_rows(_none, _one),
    "blk.{bid}.ssm_a": lambda w, h: _decay(_tiled(w, h, 0, 0, 1), h),
    "blk.{bid}.ssm_out.weight": lambda w, h: _tiled(w, h, 1, 0, _dv(h)),
}

#: Qwen3.5's M-RoPE sections when rope_parameters has none (llama.cpp requires the key)
QWEN35_SECTIONS = (11, 11, 10)


def _write_sections(h: HParams, md: Metadata) -> None:
    sections = list(decoder.rope_parameters(h).get("mrope_section") or QWEN35_SECTIONS)
    md.i32s("{arch}.rope.dimension_sections", [int(s) for s in (sections + [0] * 4)[:4]])


def write_hybrid(h: HParams, md: Metadata) -> None:
    """The delta-net's sizes, which blocks are recurrent, and the partial RoPE width."""
    md.u32("{arch}.ssm.conv_kernel", h.int("linear_conv_kernel_dim"))
    md.u32("{arch}.ssm.state_size", h.int("linear_key_head_dim"))
    md.u32("{arch}.ssm.group_count", _n_k(h))
    md.u32("{arch}.ssm.time_step_rank", _n_v(h))
    md.u32("{arch}.ssm.inner_size", _value_dim(h))
    kinds = h.get("layer_types", default=None)
    if kinds is not None:
        md.bools("{arch}.attention.recurrent_layers", [k == "linear_attention" for k in kinds])
    md.u32("{arch}.full_attention_interval", h.int("full_attention_interval", default=4))
    rope = decoder.rope_parameters(h)
    factor = float(rope.get("partial_rotary_factor", h.get("partial_rotary_factor", default=0.25)))
    md.u32("{arch}.rope.dimension_count", int(decoder.head_dim(h) * factor))


def hybrid_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Refuse what llama.cpp's delta-net blocks cannot run."""
    if config.get("linear_key_head_dim") != config.get("linear_value_head_dim"):
        raise ValueError(
            "linear_key_head_dim and linear_value_head_dim differ "
            f"({config.get('linear_key_head_dim')} and {config.get('linear_value_head_dim')}): "
            "llama.cpp's gated delta-net takes one head width for both"
        )
    kinds = config.get("layer_types")
    n_layer = config.get("num_hidden_layers")
    if isinstance(kinds, list) and len(kinds) != n_layer:
        raise ValueError(f"layer_types has {len(kinds)} entries for {n_layer} layers")
    return config


def _qwen3next_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    dense = config.get("mlp_only_layers") or []
    step = config.get("decoder_sparse_step", 1)
    if dense or step != 1 or not config.get("num_experts"):
        raise ValueError(
            "llama.cpp's qwen3next runs every block's feed-forward as mixture-of-experts; "
            f"this config has dense ones (mlp_only_layers {list(dense)}, decoder_sparse_step "
            f"{step}, num_experts {config.get('num_experts')})"
        )
    return hybrid_config(config)


def _qkvz_parts(w: np.ndarray, h: HParams) -> tuple[np.ndarray, np.ndarray]:
    """in_proj_qkvz rows, [q, k, v, z] per key head -> (all q, all k, all v), all z."""
    dk, n_k = h.int("linear_key_head_dim"), _n_k(h)
    dv_group = _value_dim(h) // n_k  # the value heads sharing one key head
    per_head = w.reshape(n_k, 2 * dk + 2 * dv_group, w.shape[-1])
    q, k, v, z = np.split(per_head, np.cumsum([dk, dk, dv_group])[:3], axis=1)
    qkv = np.concatenate([part.reshape(-1, w.shape[-1]) for part in (q, k, v)])
    return qkv, z.reshape(-1, w.shape[-1])


QKVZ_SPLITS: dict[str, tuple[Split, ...]] = {
    "blk.{bid}.ssm_in.weight": (
        Split(
            "blk.{bid}.attn_qkv.weight",
            lambda s, h: (_conv_dim(h), s[-1]),
            lambda w, h: _qkvz_parts(w, h)[0],
        ),
        Split(
            "blk.{bid}.attn_gate.weight",
            lambda s, h: (_value_dim(h), s[-1]),
            lambda w, h: _qkvz_parts(w, h)[1],
        ),
    )
}

#: the convolution weight [channels, 1, K] stored as [channels, K]
CONV_RESHAPE = {"blk.{bid}.ssm_conv1d.weight": lambda s: (s[0], s[-1])}
#: llama.cpp's converter keeps the convolution in F32 at any output type
CONV_F32 = frozenset({"blk.{bid}.ssm_conv1d.weight"})
#: names gguf-py's table lacks: the step bias is written as ssm_dt's bias
DT_BIAS = ((r"\.linear_attn\.dt_bias$", ".linear_attn.dt_proj.bias"),)


def _hybrid_arch(
    hf_names: tuple[str, ...], gguf_arch: str, family: str, *, moe: bool, qwen35: bool
) -> Architecture:
    """An entry for one of the hybrids: mixture-of-experts or dense feed-forward; Qwen3.5's
    (a vision-language checkpoint's language model) with tiled value heads and M-RoPE."""

    def metadata(h: HParams, md: Metadata) -> None:
        (write_qwen_moe if moe else decoder.write_common)(h, md)
        write_hybrid(h, md)
        if qwen35:
            _write_sections(h, md)

    return text_arch(
        hf_names,
        gguf_arch,
        family=family,
        metadata=metadata,
        vocab=("bpe",),
        shapes={**SHAPES, **(MOE_SHAPES if moe else DENSE_SHAPES)},
        transforms={**transforms(gguf_arch), **(TILED_V_HEADS if qwen35 else {})},
        skip=MTP,
        renames=(*DT_BIAS, *(FUSED_RENAMES if moe else ())),
        reshapes=CONV_RESHAPE,
        splits={**(FUSED_EXPERT_SPLITS if moe else {}), **({} if qwen35 else QKVZ_SPLITS)},
        keep_f32=CONV_F32,
        uniform_blocks=False,
        config_view=hybrid_config if qwen35 else _qwen3next_config,
        text_part=qwen35,
    )


QWEN3NEXT = _hybrid_arch(
    ("Qwen3NextForCausalLM",), "qwen3next", "Qwen3-Next", moe=True, qwen35=False
)
#: the vision-language checkpoints' language models, and the text-only classes' checkpoints
QWEN35 = _hybrid_arch(
    ("Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM"),
    "qwen35",
    "Qwen3.5 (text)",
    moe=False,
    qwen35=True,
)
QWEN35MOE = _hybrid_arch(
    ("Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM"),
    "qwen35moe",
    "Qwen3.5 MoE (text)",
    moe=True,
    qwen35=True,
)
