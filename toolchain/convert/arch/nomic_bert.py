"""NomicBertModel (nomic-embed-text) -> GGUF "nomic-bert".

Two checkpoint layouts exist: nomic's original remote-code one (fused Wqkv, fc11/fc12,
n_embd-style config keys) and transformers' native one (separate projections). Both map
to the same GGUF: a post-norm BERT with NEOX RoPE and a SwiGLU feed-forward.
The MoE variant (config sets `moe_every_n_layers`) is GGUF "nomic-bert-moe".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from toolchain.convert.arch.bert import n_embd, n_ff, write_encoder
from toolchain.convert.arch.decoder import rope_parameters
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import Architecture, HParams, Shape, Split
from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata


def _metadata(h: HParams, md: Metadata) -> None:
    write_encoder(h, md)
    trained = h.get("max_trained_positions", default=None)
    if trained is not None:  # nomic-embed-text v1/v1.5: n_positions 8192, trained on 2048
        md.u32("{arch}.context_length", min(int(trained), h.int("n_positions")))
    theta = rope_parameters(h).get("rope_theta", h.get("rotary_emb_base", default=None))
    if theta is not None:
        md.f32("{arch}.rope.freq_base", float(theta))


_SHAPES: dict[str, Shape] = {
    "token_embd.weight": lambda h: (h.int("vocab_size"), n_embd(h)),
    "token_types.weight": lambda h: (h.int("type_vocab_size", default=2), n_embd(h)),
    "blk.{bid}.attn_qkv.weight": lambda h: (3 * n_embd(h), n_embd(h)),
    "blk.{bid}.attn_q.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_k.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_v.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_output.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.ffn_up.weight": lambda h: (n_ff(h), n_embd(h)),
    "blk.{bid}.ffn_gate.weight": lambda h: (n_ff(h), n_embd(h)),
    "blk.{bid}.ffn_down.weight": lambda h: (n_embd(h), n_ff(h)),
}

ARCH = Architecture(
    family="NomicBERT",
    hf_names=("NomicBertModel",),
    gguf_arch="nomic-bert",
    tensors={
        "embeddings.word_embeddings": "token_embd",
        "embeddings.token_type_embeddings": "token_types",
        # transformers' native layout
        "embeddings.LayerNorm": "token_embd_norm",
        "layers.{bid}.self_attn.q_proj": "blk.{bid}.attn_q",
        "layers.{bid}.self_attn.k_proj": "blk.{bid}.attn_k",
        "layers.{bid}.self_attn.v_proj": "blk.{bid}.attn_v",
        "layers.{bid}.self_attn.o_proj": "blk.{bid}.attn_output",
        "layers.{bid}.post_attention_layernorm": "blk.{bid}.attn_output_norm",
        "layers.{bid}.mlp.up_proj": "blk.{bid}.ffn_up",
        "layers.{bid}.mlp.gate_proj": "blk.{bid}.ffn_gate",
        "layers.{bid}.mlp.down_proj": "blk.{bid}.ffn_down",
        "layers.{bid}.post_mlp_layernorm": "blk.{bid}.layer_output_norm",
        # nomic's original layout
        "emb_ln": "token_embd_norm",
        "encoder.layers.{bid}.attn.Wqkv": "blk.{bid}.attn_qkv",
        "encoder.layers.{bid}.attn.out_proj": "blk.{bid}.attn_output",
        "encoder.layers.{bid}.norm1": "blk.{bid}.attn_output_norm",
        "encoder.layers.{bid}.mlp.fc11": "blk.{bid}.ffn_up",
        "encoder.layers.{bid}.mlp.fc12": "blk.{bid}.ffn_gate",
        "encoder.layers.{bid}.mlp.fc2": "blk.{bid}.ffn_down",
        "encoder.layers.{bid}.norm2": "blk.{bid}.layer_output_norm",
    },
    skip=(r"embeddings\.position_ids", r"pooler\..*", r".*rotary_emb.*"),
    shapes=_SHAPES,
    metadata=_metadata,
    keep_f32=frozenset({"token_types.weight"}),
    vocab=("wpm",),
)


# nomic-embed-text-v2-moe: nomic's layout with megablocks experts in every
# `moe_every_n_layers`-th block (block i when i % n == 1), GELU feed-forwards with biases.
# Each layer's experts are two [experts * n_inner, n_embd] matrices (w1 up, w2 down).


def _n_expert(h: HParams) -> int:
    return h.int("num_local_experts", "num_experts")


def _moe_metadata(h: HParams, md: Metadata) -> None:
    # what llama.cpp's graph computes: softmax top-k routing, weights not renormalized,
    # un-gated GELU experts of n_inner, no shared expert
    for key, ok in (
        ("activation_function", "gelu"),
        ("moe_normalize_expert_weights", False),
        ("num_shared_experts", 0),
        ("ffn_div", 1),
    ):
        if h.get(key, default=ok) not in (ok, None):
            raise ConvertError(
                h.path, f"{key} = {h.get(key)!r}: llama.cpp's nomic-bert-moe supports only {ok!r}"
            )
    _metadata(h, md)
    if h.int("n_positions") == 2048 and h.get("max_trained_positions", default=None) == 2048:
        # llama.cpp's converter records nomic-embed-text-v2-moe's trained length the same way
        md.u32("{arch}.context_length", 512)
    md.u32("{arch}.moe_every_n_layers", h.int("moe_every_n_layers"))
    md.u32("{arch}.expert_count", _n_expert(h))
    md.u32("{arch}.expert_used_count", h.int("moe_top_k"))


def _experts_up(w: np.ndarray, h: HParams) -> np.ndarray:
    return w.reshape(_n_expert(h), -1, w.shape[-1])


def _experts_down(w: np.ndarray, h: HParams) -> np.ndarray:
    return np.ascontiguousarray(w.reshape(_n_expert(h), -1, w.shape[-1]).transpose(0, 2, 1))


def _experts_shape(h: HParams) -> tuple[int, ...]:
    """Each layer's w1 and w2 as megablocks stores them: experts stacked along rows."""
    return _n_expert(h) * n_ff(h), n_embd(h)


_UP = "blk.{bid}.ffn_up_exps.weight"
_DOWN = "blk.{bid}.ffn_down_exps.weight"

MOE = replace(
    text_arch(
        ("NomicBertModel",),
        "nomic-bert-moe",
        family="NomicBERT MoE",
        metadata=_moe_metadata,
        vocab=("ugm", "wpm"),
        uniform_blocks=False,
        keep_f32=frozenset({"token_types.weight"}),
        # megablocks names the expert matrices without a .weight suffix
        renames=((r"\.mlp\.experts\.mlp\.(w[12])$", r".mlp.experts.mlp.\1.weight"),),
        # the experts' shared output bias: llama.cpp's graph has no place for it (its converter
        # drops it too); megablocks initializes it to zero
        skip=(
            r"embeddings\.position_ids",
            r"pooler\..*",
            r".*rotary_emb.*",
            r"encoder\.layers\.\d+\.mlp\.experts\.bias",
        ),
        shapes={
            **{k: v for k, v in _SHAPES.items() if "ffn_gate" not in k},
            _UP: _experts_shape,
            _DOWN: _experts_shape,
            "blk.{bid}.ffn_gate_inp.weight": lambda h: (_n_expert(h), n_embd(h)),
        },
        splits={
            _UP: (
                Split(_UP, lambda s, h: (_n_expert(h), s[0] // _n_expert(h), s[1]), _experts_up),
            ),
            _DOWN: (
                Split(
                    _DOWN, lambda s, h: (_n_expert(h), s[1], s[0] // _n_expert(h)), _experts_down
                ),
            ),
        },
    ),
    selected_by="moe_every_n_layers",
)
