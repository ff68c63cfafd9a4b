"""BertModel (and sentence-transformers models built on it) -> GGUF "bert".

Metadata and tensor types follow Ollama's converter, which the conformance recording
of all-MiniLM-L6-v2 pins: every 2-D weight but token_types is F16 under F16 output.
"""

from __future__ import annotations

from toolchain.convert.architecture import Architecture, HParams, Shape
from toolchain.convert.metadata import Metadata


def n_embd(h: HParams) -> int:
    return h.int("hidden_size", "n_embd")


def n_ff(h: HParams) -> int:
    return h.int("intermediate_size", "n_inner")


def write_encoder(h: HParams, md: Metadata) -> None:
    """The keys BERT-family encoders share (the pooling type comes from sentence-transformers)."""
    md.boolean("{arch}.attention.causal", False)
    md.u32("{arch}.attention.head_count", h.int("num_attention_heads", "n_head"))
    md.f32(
        "{arch}.attention.layer_norm_epsilon",
        h.float("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"),
    )
    md.u32("{arch}.block_count", h.int("num_hidden_layers", "n_layer", "n_layers"))
    md.u32("{arch}.context_length", h.int("max_position_embeddings", "n_positions", "n_ctx"))
    md.u32("{arch}.embedding_length", n_embd(h))
    md.u32("{arch}.feed_forward_length", n_ff(h))


_LAYER = "encoder.layer.{bid}"

_SHAPES: dict[str, Shape] = {
    "token_embd.weight": lambda h: (h.int("vocab_size"), n_embd(h)),
    "position_embd.weight": lambda h: (h.int("max_position_embeddings"), n_embd(h)),
    "token_types.weight": lambda h: (h.int("type_vocab_size", default=2), n_embd(h)),
    "blk.{bid}.attn_q.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_k.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_v.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.attn_output.weight": lambda h: (n_embd(h), n_embd(h)),
    "blk.{bid}.ffn_up.weight": lambda h: (n_ff(h), n_embd(h)),
    "blk.{bid}.ffn_down.weight": lambda h: (n_embd(h), n_ff(h)),
}

ARCH = Architecture(
    family="BERT",
    hf_names=("BertModel", "BertForMaskedLM", "BertForSequenceClassification"),
    gguf_arch="bert",
    tensors={
        "embeddings.word_embeddings": "token_embd",
        "embeddings.position_embeddings": "position_embd",
        "embeddings.token_type_embeddings": "token_types",
        "embeddings.LayerNorm": "token_embd_norm",
        f"{_LAYER}.attention.self.query": "blk.{bid}.attn_q",
        f"{_LAYER}.attention.self.key": "blk.{bid}.attn_k",
        f"{_LAYER}.attention.self.value": "blk.{bid}.attn_v",
        f"{_LAYER}.attention.output.dense": "blk.{bid}.attn_output",
        f"{_LAYER}.attention.output.LayerNorm": "blk.{bid}.attn_output_norm",
        f"{_LAYER}.intermediate.dense": "blk.{bid}.ffn_up",
        f"{_LAYER}.output.dense": "blk.{bid}.ffn_down",
        f"{_LAYER}.output.LayerNorm": "blk.{bid}.layer_output_norm",
        "classifier": "cls.output",
    },
    renames=((r"^bert\.", ""), (r"\.gamma$", ".weight"), (r"\.beta$", ".bias")),
    skip=(
        r"embeddings\.position_ids",
        r"pooler\..*",
        r"cls\.predictions.*",
        r"cls\.seq_relationship.*",
    ),
    shapes=_SHAPES,
    metadata=write_encoder,
    keep_f32=frozenset({"token_types.weight"}),
    vocab=("wpm",),
)
