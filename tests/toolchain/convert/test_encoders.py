"""Tiny BERT and NomicBERT encoders: hidden states and pooled embeddings from llama.cpp
against transformers on the same checkpoint, and token ids against its tokenizer.

Tolerances, max |Δ| / max |h| over the last hidden states:
- BERT F32: 5e-3. llama.cpp evaluates GELU through a half-precision lookup table, which
  alone accounts for the 1.1e-3 measured; NomicBERT (SwiGLU, no table) F32: 1e-4
  (measured 3e-6).
- F16 (both): 1e-2 (measured 1.8e-3 / 2.8e-3).
Pooled sentence embeddings (the sentence-transformers pooling recorded in the GGUF):
cosine >= 0.9999 at F32 and >= 0.999 at F16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.toolchain.convert.corpus import wordpiece_texts
from tests.toolchain.convert.oracle import load_llama, relative_error

pytestmark = pytest.mark.oracle

ENCODERS = {"tiny-bert": "cls", "tiny-nomic-bert": "mean"}
TOLERANCE = {
    ("tiny-bert", "f32"): 5e-3,
    ("tiny-nomic-bert", "f32"): 1e-4,
    ("tiny-bert", "f16"): 1e-2,
    ("tiny-nomic-bert", "f16"): 1e-2,
}
COSINE = {"f32": 0.9999, "f16": 0.999}
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A sentence embedding summarises meaning in one vector.",
    "Der Fuchs ist schnell; le renard est rapide.",
    "東京は日本の首都です。",
]

# LLAMA_POOLING_TYPE_NONE: per-token vectors instead of the pooled one
POOLING_NONE = 0


def _hidden_states(src: Path, text: str) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src), dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(**tok(text, return_tensors="pt")).last_hidden_state[0]
    return out.numpy()


@pytest.mark.parametrize("outtype", ["f32", "f16"])
@pytest.mark.parametrize("name", list(ENCODERS))
def test_hidden_states_and_pooling_match_transformers(
    name: str, outtype: str, tiny_models_dir: Path, converted
) -> None:
    src = tiny_models_dir / name
    gguf = converted(src, outtype)
    tokens = load_llama(gguf, embedding=True, pooling_type=POOLING_NONE)
    pooled = load_llama(gguf, embedding=True)
    try:
        for text in SENTENCES:
            ref = _hidden_states(src, text)
            ours = np.array(tokens.embed(text), dtype=np.float32)
            assert ours.shape == ref.shape
            assert relative_error(ours, ref) <= TOLERANCE[name, outtype], text
            want = ref[0] if ENCODERS[name] == "cls" else ref.mean(axis=0)
            got = np.array(pooled.embed(text), dtype=np.float32)
            cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
            assert cosine >= COSINE[outtype], text
    finally:
        tokens.close()
        pooled.close()


@pytest.mark.parametrize("name", list(ENCODERS))
def test_token_ids_match_transformers(name: str, tiny_models_dir: Path, converted) -> None:
    from transformers import AutoTokenizer

    src = tiny_models_dir / name
    tok = AutoTokenizer.from_pretrained(str(src))
    llm = load_llama(converted(src, "f16"), vocab_only=True)
    try:
        for text in wordpiece_texts():
            assert (
                llm.tokenize(text.encode(), add_bos=True, special=True) == tok(text)["input_ids"]
            ), text
    finally:
        llm.close()
