"""Dense decoders that differ from Llama only in a few keys or tensors.

- Phi3ForCausalLM -> "phi3": fused QKV and gate+up projections (llama.cpp reads them
  fused), original context length, rope dimensions, sliding window (0 = none).
- Olmo2ForCausalLM -> "olmo2": Q/K norms over the whole projection, norms after
  attention and feed-forward instead of before.
- GraniteForCausalLM -> "granite": Llama plus embedding/attention/residual/logit scales.
- SmolLM3ForCausalLM -> "smollm3": Llama with RoPE left out of every 4th layer
  (llama.cpp knows the interval).
- CohereForCausalLM -> "command-r": parallel attention and feed-forward under one
  LayerNorm, logits scaled.
"""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import PERMUTE_QK, text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def write_llama(h: HParams, md: Metadata) -> None:
    """LlamaModel's keys: the common ones, vocab size and rope dimensions."""
    decoder.write_common(h, md)
    md.u32("{arch}.vocab_size", decoder.n_vocab(h))
    md.u32("{arch}.rope.dimension_count", decoder.head_dim(h))


def _write_phi3(h: HParams, md: Metadata) -> None:
    rope = decoder.rope_parameters(h)
    n_embd, n_head = decoder.n_embd(h), decoder.n_head(h)
    rot = float(rope.get("partial_rotary_factor", h.get("partial_rotary_factor", default=1.0)))
    md.u32("{arch}.context_length", h.int("n_positions", "max_position_embeddings"))
    md.u32(
        "{arch}.rope.scaling.original_context_length",
        int(
            rope.get("original_max_position_embeddings", h.int("original_max_position_embeddings"))
        ),
    )
    md.u32("{arch}.embedding_length", n_embd)
    md.u32("{arch}.feed_forward_length", decoder.n_ff(h))
    md.u32("{arch}.block_count", h.int("num_hidden_layers"))
    md.u32("{arch}.attention.head_count", n_head)
    md.u32("{arch}.attention.head_count_kv", decoder.n_head_kv(h))
    md.f32("{arch}.attention.layer_norm_rms_epsilon", h.float("rms_norm_eps"))
    md.u32("{arch}.rope.dimension_count", int(rot * n_embd) // n_head)
    md.f32("{arch}.rope.freq_base", float(rope.get("rope_theta", 10000.0)))
    md.u32("{arch}.attention.sliding_window", h.int("sliding_window", default=0))


def _write_olmo2(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    window = h.get("sliding_window", default=None)
    if window is not None:
        md.u32("{arch}.attention.sliding_window", int(window))
        kinds = h.get("layer_types", default=None)
        n_layer = h.int("num_hidden_layers")
        pattern = (
            [k == "sliding_attention" for k in kinds]
            if isinstance(kinds, list)
            else [(i + 1) % 4 != 0 for i in range(n_layer)]
        )
        md.bools("{arch}.attention.sliding_window_pattern", pattern)
        per_kind = h.get("rope_parameters", default={})
        local = per_kind.get("sliding_attention", {}) if isinstance(per_kind, dict) else {}
        if isinstance(local, dict) and local.get("rope_theta") is not None:
            md.f32("{arch}.rope.freq_base_swa", float(local["rope_theta"]))


def _write_granite(h: HParams, md: Metadata) -> None:
    # llama.cpp's converter ignores head_dim for Granite (hidden / heads is implied)
    config = {k: v for k, v in h.config.items() if k != "head_dim"}
    plain = HParams(config, h.path)
    write_llama(plain, md)
    for key, gguf_key in (
        ("attention_multiplier", "attention.scale"),
        ("embedding_multiplier", "embedding_scale"),
        ("residual_multiplier", "residual_scale"),
        ("logits_scaling", "logit_scale"),
    ):
        value = h.get(key, default=None)
        if value:
            md.f32("{arch}." + gguf_key, float(value))


def _write_cohere(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    md.u32("{arch}.context_length", h.int("model_max_length", "max_position_embeddings"))
    md.f32("{arch}.logit_scale", h.float("logit_scale"))
    md.string("{arch}.rope.scaling.type", "none")


_FUSED = {k: v for k, v in decoder.SHAPES.items() if "ffn_up" not in k}

PHI3 = text_arch(
    ("Phi3ForCausalLM",),
    "phi3",
    family="Phi-3",
    metadata=_write_phi3,
    vocab=("spm",),
    shapes=_FUSED,
)
OLMO2 = text_arch(("Olmo2ForCausalLM",), "olmo2", family="OLMo 2", shapes={})
# OLMo 3 is OLMo 2 with sliding-window layers (llama.cpp runs it as "olmo2")
OLMO3 = text_arch(("Olmo3ForCausalLM",), "olmo2", family="OLMo 3", metadata=_write_olmo2, shapes={})
GRANITE = text_arch(
    ("GraniteForCausalLM",),
    "granite",
    family="Granite",
    metadata=_write_granite,
    transforms=PERMUTE_QK,
)
SMOLLM3 = text_arch(
    ("SmolLM3ForCausalLM",),
    "smollm3",
    family="SmolLM3",
    metadata=write_llama,
    transforms=PERMUTE_QK,
)
COMMAND_R = text_arch(
    ("CohereForCausalLM",), "command-r", family="Command-R", metadata=_write_cohere, vocab=("bpe",)
)
