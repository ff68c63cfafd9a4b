"""NomicBertModel (nomic-embed-text) -> GGUF "nomic-bert".

Two checkpoint layouts exist: nomic's original remote-code one (fused Wqkv, fc11/fc12,
n_embd-style config keys) and transformers' native one (separate projections). Both map
to the same GGUF: a post-norm BERT with NEOX RoPE and a SwiGLU feed-forward.
"""

from __future__ import annotations

from toolchain.convert.arch.bert import n_embd, n_ff, write_encoder
from toolchain.convert.arch.decoder import rope_parameters
from toolchain.convert.architecture import Architecture, HParams, Shape
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
