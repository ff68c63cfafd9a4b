"""XLM-RoBERTa, the embedding model and the reranker (fixtures/tiny_breadth.py ENCODERS),
converted at F32 and run by llama.cpp against transformers on the same checkpoint.

- Hidden states: max |Δ| / max |h| <= 1e-3 (measured 5.6e-4: llama.cpp evaluates GELU
  through a half-precision lookup table, the rest agrees to ~1e-6).
- Pooled (CLS) embedding: cosine >= 0.9999.
- Reranker: llama.cpp's rank pooling (classifier dense + tanh + out_proj on the first
  token) against transformers' logit, |Δ| <= 5e-3 * max(1, |logit|) (measured up to
  1.9e-3 on logits of 0.4..2.2: the same GELU table, then the head).
- Token ids: llama.cpp's UGM tokenizer against transformers' on the shared texts.
- llama.cpp's converter: same tensors and metadata but for the listed differences.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fixtures.tiny_breadth import ENCODERS_BY_NAME
from tests.toolchain.convert.breadth import Family, tiny
from tests.toolchain.convert.oracle import load_llama, relative_error

pytestmark = pytest.mark.oracle

TOLERANCE = 1e-3
RERANK_TOLERANCE = 5e-3
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der Fuchs ist schnell; le renard est rapide.",
    "東京は日本の首都です。",
    "¿Dónde están los niños? В чащах юга жил бы цитрус.",
]
POOLING_NONE, POOLING_RANK = 0, 4

#: what differs from llama.cpp's converter output, and why
_VOCAB = {
    "tokenizer.ggml.tokens": "the reference reads sentencepiece.bpe.model and realigns it to "
    "fairseq's order itself, leaving <mask> (id 701) as [PAD701]; ours reads tokenizer.json, "
    "where transformers already put <mask> there",
    "tokenizer.ggml.token_type": "same cause (<mask> CONTROL in ours, UNUSED in the reference)",
    "tokenizer.ggml.scores": "same cause (<mask>: the added-token score 0 in tokenizer.json, "
    "the padding score -10000 in the reference)",
}
REFERENCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-embedding-gemma": {
        "tokenizer.ggml.add_eos_token": "ours copies tokenizer_config.json's add_eos_token "
        "(false); the reference infers add_sep_token (false) instead; both are llama.cpp's "
        "defaults",
        "tokenizer.ggml.add_sep_token": "see add_eos_token",
        "tokenizer.ggml.scores": "the reference reads added tokens only from files "
        "transformers 5 no longer writes; ours reads tokenizer.json's added_tokens (score "
        "-1000, as for Gemma in test_breadth)",
        "tokenizer.ggml.token_type": "same cause (special tokens CONTROL, others "
        "USER_DEFINED in ours)",
        "tokenizer.ggml.tokens": "same cause: <mask> (id 800) stays [PAD800] in the reference",
        "gemma-embedding.attention.sliding_window_pattern": "config.json's layer_types "
        "(sliding, full) differ from llama.cpp's assumed 5-to-1 pattern; the reference omits "
        "the key",
    },
    "tiny-xlm-roberta": _VOCAB,
    "tiny-xlm-roberta-reranker": {
        **_VOCAB,
        "bert.pooling_type": "ours asks for rank "
        "pooling, which a reranker needs; the reference leaves it "
        "to the user (--pooling rank)",
    },
}


FAMILY = Family(
    tuple(ENCODERS_BY_NAME),
    REFERENCE_DIFFERENCES,
    # EmbeddingGemma's Dense projections: llama.cpp's converter writes them on request
    # (Ollama's always, as ours does)
    flags={"tiny-embedding-gemma": ("--sentence-transformers-dense-modules",)},
)
test_token_ids_match_transformers = FAMILY.token_ids_test()
test_same_gguf_as_llama_cpp_converter = FAMILY.reference_test()


def _hf(src: Path, cls: str) -> tuple[object, object]:
    import torch
    import transformers

    model = getattr(transformers, cls).from_pretrained(str(src), dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(src))


@contextlib.contextmanager
def embedders(gguf: Path) -> Iterator[tuple[Any, Any]]:
    """llama.cpp on `gguf` twice: per-token states (no pooling), and pooled as the file says."""
    tokens = load_llama(gguf, embedding=True, pooling_type=POOLING_NONE)
    pooled = load_llama(gguf, embedding=True)
    try:
        yield tokens, pooled
    finally:
        tokens.close()
        pooled.close()


def _hidden_states(model: Any, tok: Any, text: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        states: np.ndarray = model(**tok(text, return_tensors="pt")).last_hidden_state[0].numpy()
    return states


def test_embeddings_match_transformers(converted) -> None:
    src = tiny("tiny-xlm-roberta")
    model, tok = _hf(src, "XLMRobertaModel")
    with embedders(converted(src, "f32")) as (tokens, pooled):
        for text in SENTENCES:
            ref = _hidden_states(model, tok, text)
            ours = np.array(tokens.embed(text), dtype=np.float32)
            assert ours.shape == ref.shape
            assert relative_error(ours, ref) <= TOLERANCE, text
            got = np.array(pooled.embed(text), dtype=np.float32)
            cosine = float(got @ ref[0] / np.linalg.norm(got) / np.linalg.norm(ref[0]))
            assert cosine >= 0.9999, text


def test_embedding_gemma_matches_sentence_transformers(converted) -> None:
    """EmbeddingGemma: llama.cpp's per-token states against transformers' Gemma3TextModel
    (attending both ways) through the two Dense projections (llama.cpp applies them to
    every token when not pooling), and its pooled embedding (mean, then the projections)
    against sentence-transformers' whole pipeline, both unit-normalized."""
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer

    src = tiny("tiny-embedding-gemma")
    model, tok = _hf(src, "Gemma3TextModel")
    project = np.eye(64, dtype=np.float32)
    for folder in ("2_Dense", "3_Dense"):
        project = project @ load_file(str(src / folder / "model.safetensors"))["linear.weight"].T
    pipeline = SentenceTransformer(str(src), device="cpu")
    with embedders(converted(src, "f32")) as (tokens, pooled):
        for text in SENTENCES:
            ref = _hidden_states(model, tok, text)
            ours = np.array(tokens.embed(text), dtype=np.float32)
            assert ours.shape == ref.shape
            assert relative_error(ours, ref @ project) <= TOLERANCE, text
            want = pipeline.encode(text)
            got = np.array(pooled.embed(text), dtype=np.float32)
            assert got.shape == want.shape == (64,)
            assert relative_error(got / np.linalg.norm(got), want) <= TOLERANCE, text


def test_rerank_score_matches_transformers(converted) -> None:
    import torch

    src = tiny("tiny-xlm-roberta-reranker")
    model, tok = _hf(src, "XLMRobertaForSequenceClassification")
    llm = load_llama(converted(src, "f32"), embedding=True)  # rank pooling from the file
    try:
        scores = []
        for text in SENTENCES:
            with torch.no_grad():
                ref = float(model(**tok(text, return_tensors="pt")).logits[0, 0])
            ours = float(np.ravel(llm.embed(text, normalize=False))[0])
            assert abs(ours - ref) <= RERANK_TOLERANCE * max(1.0, abs(ref)), (text, ours, ref)
            scores.append(ref)
        assert np.ptp(scores) > 10 * RERANK_TOLERANCE  # the texts score differently
    finally:
        llm.close()
