"""Tiny random decoders of every architecture, converted and run in llama.cpp, against
transformers running the same checkpoint.

Tolerances, as max |Δlogit| / max |logit| over every position of every prompt:
- F32: 2e-4. Both sides compute in float32 (llama.cpp with an F32 KV cache); what is
  left is summation order, measured at 2e-6..3e-5 (Gemma 3's sqrt(d)-scaled embeddings
  give the largest logits and the largest error).
- F16: 1e-2. The weights are rounded to half precision and llama.cpp also rounds the
  activations to F16 inside its matmuls; measured 2e-4..4.4e-3.
Greedy continuations (argmax, 20 tokens, no EOS stop) must be identical at both types,
on every prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.toolchain.convert.corpus import LEADING_WHITESPACE, TEXTS
from tests.toolchain.convert.oracle import (
    check_greedy,
    hf_logits,
    llama_logits,
    load_llama,
    relative_error,
)

pytestmark = pytest.mark.oracle

DECODERS = ["tiny-llama", "tiny-mistral", "tiny-llama3", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3"]
SENTENCEPIECE = {"tiny-llama", "tiny-mistral", "tiny-gemma3"}
TOLERANCE = {"f32": 2e-4, "f16": 1e-2}
PROMPTS = [
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Le renard brun saute par-dessus le chien paresseux. 東京の天気は晴れです 🌞",
]


def assert_same_choices(ours: np.ndarray, ref: np.ndarray, *, exact: bool) -> None:
    """The argmax at every position agrees; at F16 a flip is allowed only in a near tie
    (the reference's top two closer than twice the largest logit error)."""
    flips = np.flatnonzero(ours.argmax(-1) != ref.argmax(-1))
    if exact:
        assert flips.size == 0
    slack = 2 * np.abs(ours - ref).max()
    for pos in flips:
        chosen = ours[pos].argmax()
        assert ref[pos].max() - ref[pos, chosen] <= slack, f"position {pos}"


def _hf(path: Path) -> tuple[object, object]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize("outtype", ["f32", "f16"])
@pytest.mark.parametrize("name", DECODERS)
def test_logits_and_greedy_match_transformers(
    name: str, outtype: str, tiny_models_dir: Path, converted
) -> None:
    src = tiny_models_dir / name
    model, tok = _hf(src)
    llm = load_llama(converted(src, outtype), logits_all=True)
    try:
        for prompt in PROMPTS:
            ids = tok(prompt)["input_ids"]
            ours, ref = llama_logits(llm, ids), hf_logits(model, ids)
            assert ours.shape == ref.shape
            assert relative_error(ours, ref) <= TOLERANCE[outtype], prompt
            assert_same_choices(ours, ref, exact=outtype == "f32")
        for prompt in PROMPTS:
            check_greedy(llm, model, tok(prompt)["input_ids"], 20)
    finally:
        llm.close()


@pytest.mark.parametrize("name", DECODERS)
def test_token_ids_match_transformers(name: str, tiny_models_dir: Path, converted) -> None:
    from transformers import AutoTokenizer

    src = tiny_models_dir / name
    tok = AutoTokenizer.from_pretrained(str(src))
    llm = load_llama(converted(src, "f16"), vocab_only=True)
    try:
        for text in TEXTS:
            assert (
                llm.tokenize(text.encode(), add_bos=True, special=True) == tok(text)["input_ids"]
            ), text
        if name in SENTENCEPIECE:
            import sentencepiece

            sp = sentencepiece.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
            for text in TEXTS + LEADING_WHITESPACE:
                assert llm.tokenize(text.encode(), add_bos=False, special=False) == sp.encode(
                    text
                ), text
    finally:
        llm.close()
