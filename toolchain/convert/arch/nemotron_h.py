"""NemotronHForCausalLM -> "nemotron_h": a stack of Mamba-2, attention and MLP blocks,
one mixer per block, chosen by config.json's hybrid_override_pattern ("M" Mamba-2, "*"
attention, "-" MLP) or, as transformers 5 saves it, the layers_block_type list.
A pattern with MoE blocks ("E", Nemotron 3) selects "nemotron_h_moe": per-expert
weights stacked, sigmoid routing with a selection bias, a shared expert.

llama.cpp tells the kinds apart by two per-layer arrays: key-value heads (non-zero only
for attention) and feed-forward width (non-zero only for MLP or MoE); a block with neither is
Mamba-2. The Mamba-2 parameters take llama.cpp's forms: A = -exp(A_log) and D as
[heads, 1] columns, the depthwise convolution [channels, 1, L] as [channels, L], and
the gated norm's weight as [groups, inner / groups]. Attention has no RoPE; Q and K are
still written in llama.cpp's permuted row order, as its converter does (the same
permutation of both leaves every dot product unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import PERMUTE_QK, text_arch
from toolchain.convert.architecture import HParams, Shape, Split
from toolchain.convert.metadata import Metadata

MAMBA, ATTENTION, MLP, EXPERTS = "M", "*", "-", "E"
#: transformers 5's names for the pattern characters (and the older ones it still reads)
_KINDS = {
    "linear_attention": MAMBA,
    "mamba": MAMBA,
    "full_attention": ATTENTION,
    "attention": ATTENTION,
    "mlp": MLP,
    "moe": EXPERTS,
}
#: llama.cpp runs Nemotron-H without positions: the converter announces a 2^20 context
NO_ROPE_CONTEXT = 1 << 20


def layer_pattern(config: Mapping[str, Any]) -> str:
    """One character per block, from either spelling of the layer kinds."""
    pattern = config.get("hybrid_override_pattern")
    if isinstance(pattern, str):
        return pattern
    kinds = config.get("layers_block_type")
    if not isinstance(kinds, list) or not all(k in _KINDS for k in kinds):
        raise ValueError(
            "needs hybrid_override_pattern (a string of M, *, -) or layers_block_type "
            f"(a list of {', '.join(sorted(_KINDS))})"
        )
    return "".join(_KINDS[k] for k in kinds)


def _checked(config: Mapping[str, Any], kinds: str) -> Mapping[str, Any]:
    """config.json with its pattern (only `kinds` allowed) checked and num_hidden_layers
    set from it."""
    pattern = layer_pattern(config)
    unknown = sorted(set(pattern) - set(kinds))
    if unknown:
        raise ValueError(f"hybrid_override_pattern has block kinds {unknown} {_REFUSED}")
    for key, act in (("mlp_hidden_act", "relu2"), ("mamba_hidden_act", "silu")):
        if config.get(key, act) != act:
            raise ValueError(f"{key} is {config[key]!r}: llama.cpp runs Nemotron-H with {act}")
    n_layer = config.get("num_hidden_layers", len(pattern))
    if n_layer != len(pattern):
        raise ValueError(
            f"hybrid_override_pattern has {len(pattern)} blocks, num_hidden_layers {n_layer}"
        )
    return {**config, "hybrid_override_pattern": pattern, "num_hidden_layers": len(pattern)}


_REFUSED = (
    "that llama.cpp cannot run in this model (it knows M, *, - for dense models and "
    "M, *, E for MoE ones: a feed-forward block of a MoE model is read as MoE)"
)


def has_moe_blocks(config: Mapping[str, Any]) -> bool:
    """Whether the pattern has MoE blocks (what selects llama.cpp's nemotron_h_moe)."""
    try:
        return EXPERTS in layer_pattern(config)
    except ValueError:
        return False


def _dense_view(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return _checked(config, MAMBA + ATTENTION + MLP)


def _moe_view(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return _checked(config, MAMBA + ATTENTION + EXPERTS)


def _n_groups(h: HParams) -> int:
    return h.int("n_groups", "mamba_n_groups")


def _d_inner(h: HParams) -> int:
    return h.int("mamba_num_heads") * h.int("mamba_head_dim")


def _conv_channels(h: HParams) -> int:
    return _d_inner(h) + 2 * _n_groups(h) * h.int("ssm_state_size")


def _metadata(h: HParams, md: Metadata, ff_kind: str = MLP, ff: int | None = None) -> None:
    """llama.cpp's converter keys (its GraniteHybrid base and NemotronH's own); `ff` is
    the width of the `ff_kind` blocks (the others have none)."""
    pattern = h.get("hybrid_override_pattern")
    width = decoder.n_ff(h) if ff is None else ff
    md.u32("{arch}.block_count", len(pattern))
    md.u32("{arch}.context_length", NO_ROPE_CONTEXT)
    md.u32("{arch}.embedding_length", decoder.n_embd(h))
    md.i32s("{arch}.feed_forward_length", [width if kind == ff_kind else 0 for kind in pattern])
    md.u32("{arch}.attention.head_count", decoder.n_head(h))
    md.i32s(
        "{arch}.attention.head_count_kv",
        [decoder.n_head_kv(h) if kind == ATTENTION else 0 for kind in pattern],
    )
    rope = decoder.rope_parameters(h)
    if rope.get("rope_theta") is not None:
        md.f32("{arch}.rope.freq_base", float(rope["rope_theta"]))
    md.f32("{arch}.attention.layer_norm_epsilon", h.float("layer_norm_epsilon", "rms_norm_eps"))
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.rope.dimension_count", decoder.head_dim(h))
    md.u32("{arch}.ssm.conv_kernel", h.int("conv_kernel", "mamba_d_conv"))
    md.u32("{arch}.ssm.state_size", h.int("ssm_state_size"))
    md.u32("{arch}.ssm.group_count", _n_groups(h))
    md.u32("{arch}.ssm.inner_size", _d_inner(h))
    md.u32("{arch}.ssm.time_step_rank", h.int("mamba_num_heads"))
    md.boolean("{arch}.rope.scaling.finetuned", False)
    md.u32("{arch}.attention.key_length", decoder.head_dim(h))
    md.u32("{arch}.attention.value_length", decoder.head_dim(h))


def _moe_metadata(h: HParams, md: Metadata) -> None:
    """The dense keys with the expert width per MoE block, then the routing: sigmoid
    scores (llama.cpp's fixed choice for this architecture) with a selection bias,
    grouped top-k, a shared expert, normalized and scaled weights."""
    ff = h.int("moe_intermediate_size")
    _metadata(h, md, EXPERTS, ff)
    md.u32("{arch}.expert_count", h.int("n_routed_experts"))
    md.u32("{arch}.expert_used_count", h.int("num_experts_per_tok"))
    md.u32("{arch}.expert_group_count", h.int("n_group", default=1))
    md.u32("{arch}.expert_group_used_count", h.int("topk_group", default=1))
    md.u32("{arch}.expert_feed_forward_length", ff)
    md.u32("{arch}.expert_shared_feed_forward_length", h.int("moe_shared_expert_intermediate_size"))
    md.u32("{arch}.expert_shared_count", h.int("n_shared_experts"))
    md.boolean("{arch}.expert_weights_norm", bool(h.get("norm_topk_prob")))
    md.f32("{arch}.expert_weights_scale", h.float("routed_scaling_factor"))
    latent = h.get("moe_latent_size", default=None)
    if latent is not None:
        md.u32("{arch}.moe_latent_size", int(latent))


def _neg_exp(w: np.ndarray, _h: HParams) -> np.ndarray:
    """A from A_log: llama.cpp's scan takes the (negative) decay rate itself. In float64
    and rounded once, so the result is torch's float32 exp (numpy's is 1 ulp off at times)."""
    return (-np.exp(w.astype(np.float64))).astype(np.float32)


def _unchanged(w: np.ndarray, _h: HParams) -> np.ndarray:
    return w


def _grouped(shape: tuple[int, ...], h: HParams) -> tuple[int, ...]:
    return _n_groups(h), shape[0] // _n_groups(h)


def _column(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape[0], 1


_SSM_SHAPES: dict[str, Shape] = {
    "blk.{bid}.ssm_in.weight": lambda h: (
        _d_inner(h) + _conv_channels(h) + h.int("mamba_num_heads"),
        decoder.n_embd(h),
    ),
    "blk.{bid}.ssm_conv1d.weight": lambda h: (_conv_channels(h), 1, h.int("conv_kernel")),
    "blk.{bid}.ssm_a": lambda h: (h.int("mamba_num_heads"),),
    "blk.{bid}.ssm_d": lambda h: (h.int("mamba_num_heads"),),
    "blk.{bid}.ssm_dt.bias": lambda h: (h.int("mamba_num_heads"),),
    "blk.{bid}.ssm_norm.weight": lambda h: (_d_inner(h),),
    "blk.{bid}.ssm_out.weight": lambda h: (decoder.n_embd(h), _d_inner(h)),
}

_RENAMES = (
    # transformers' in-memory names (PEFT adapters use them) -> the checkpoint's
    (r"^model\.layers\.(\d+)\.mixer\.", r"backbone.layers.\1.mixer."),
    (r"\.mixer\.dt_bias$", ".mixer.dt.bias"),
)

ARCH = text_arch(
    ("NemotronHForCausalLM",),
    "nemotron_h",
    family="Nemotron-H",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={**decoder.SHAPES, **_SSM_SHAPES},
    transforms={**PERMUTE_QK, "blk.{bid}.ssm_a": _neg_exp},
    keep_f32=frozenset({"blk.{bid}.ssm_conv1d.weight"}),
    uniform_blocks=False,
    renames=_RENAMES,
    reshapes={
        "blk.{bid}.ssm_conv1d.weight": lambda s: (s[0], s[-1]),
        "blk.{bid}.ssm_a": _column,
        "blk.{bid}.ssm_d": _column,
    },
    splits={
        "blk.{bid}.ssm_norm.weight": (Split("blk.{bid}.ssm_norm.weight", _grouped, _unchanged),)
    },
    config_view=_dense_view,
)

MOE = replace(
    text_arch(
        ("NemotronHForCausalLM",),
        "nemotron_h_moe",
        family="Nemotron-H MoE",
        metadata=_moe_metadata,
        vocab=("bpe",),
        shapes=ARCH.shapes,
        transforms=ARCH.transforms,
        keep_f32=ARCH.keep_f32,
        uniform_blocks=False,
        names={
            f"backbone.layers.{{bid}}.mixer.experts.{w}": f"blk.{{bid}}.ffn_{w[:-5]}_exps"
            for w in ("up_proj", "down_proj")
        },
        renames=_RENAMES,
        reshapes=ARCH.reshapes,
        splits=ARCH.splits,
        config_view=_moe_view,
    ),
    selected_by="hybrid_override_pattern",
    selected_when=("has MoE blocks (E)", has_moe_blocks),
)
