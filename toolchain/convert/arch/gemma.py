"""GemmaForCausalLM -> "gemma" and Gemma2ForCausalLM -> "gemma2".

Both scale RMSNorm by (1 + w), so every norm weight gets +1; the output head is the
(tied) embedding, and llama.cpp's converter drops a stray lm_head. Gemma 2 adds logit
soft-capping on attention scores and on the final logits, and a sliding window on
every other layer.
"""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.arch.text import norm_weights, plus_one, text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def _write_gemma(h: HParams, md: Metadata) -> None:
    md.u32("{arch}.context_length", h.int("max_position_embeddings"))
    md.u32("{arch}.embedding_length", decoder.n_embd(h))
    md.u32("{arch}.block_count", h.int("num_hidden_layers"))
    md.u32("{arch}.feed_forward_length", decoder.n_ff(h))
    md.u32("{arch}.attention.head_count", decoder.n_head(h))
    md.u32("{arch}.attention.head_count_kv", decoder.n_head_kv(h))
    md.f32("{arch}.attention.layer_norm_rms_epsilon", h.float("rms_norm_eps"))
    md.u32("{arch}.attention.key_length", h.int("head_dim"))
    md.u32("{arch}.attention.value_length", h.int("head_dim"))


def _write_gemma2(h: HParams, md: Metadata) -> None:
    _write_gemma(h, md)
    md.f32("{arch}.attn_logit_softcapping", h.float("attn_logit_softcapping"))
    md.f32("{arch}.final_logit_softcapping", h.float("final_logit_softcapping"))
    md.u32("{arch}.attention.sliding_window", h.int("sliding_window"))


GEMMA = text_arch(
    ("GemmaForCausalLM",),
    "gemma",
    family="Gemma",
    metadata=_write_gemma,
    vocab=("spm",),
    skip=(r"lm_head\.weight",),
    transforms=dict.fromkeys(norm_weights("gemma"), plus_one),
)

GEMMA2 = text_arch(
    ("Gemma2ForCausalLM",),
    "gemma2",
    family="Gemma 2",
    metadata=_write_gemma2,
    vocab=("spm",),
    skip=(r"lm_head\.weight",),
    transforms=dict.fromkeys(norm_weights("gemma2"), plus_one),
)
