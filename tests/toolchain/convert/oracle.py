"""The references the converted files are judged against: llama.cpp (through
llama-cpp-python) running our GGUF, and transformers running the original checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: GGML_TYPE_F32 for llama.cpp's KV cache: its default F16 cache would add its own error
F32 = 0


def load_llama(path: Path, **kwargs: Any) -> Any:
    from llama_cpp import Llama

    options: dict[str, Any] = {
        "n_ctx": 256,
        "n_batch": 256,
        "n_ubatch": 256,
        "n_threads": 2,
        "verbose": False,
        "type_k": F32,
        "type_v": F32,
        "seed": 0,
    }
    options.update(kwargs)
    return Llama(str(path), **options)


def llama_logits(llm: Any, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(llm: Any, ids: list[int], n: int) -> list[int]:
    """n tokens by argmax, never stopping at EOS (transformers' generate would)."""
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        llm.eval([token])
    return out


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def check_greedy(llm: Any, model: Any, ids: list[int], n: int, *, slack: float = 0.0) -> None:
    """llama.cpp's n-token greedy continuation is transformers' greedy continuation.

    Checked by teacher forcing: one transformers pass over prompt + continuation must pick
    the same token at every step (which is exactly what its own greedy loop would do).
    With `slack` > 0 a different pick is accepted only where transformers' top two are
    within `slack` of each other (a near tie that rounding legitimately flips); the
    comparison stops there, as the continuations part ways.
    """
    tokens = llama_greedy(llm, ids, n)
    ref = hf_logits(model, ids + tokens)[len(ids) - 1 : len(ids) - 1 + n]
    for step, (token, row) in enumerate(zip(tokens, ref, strict=True)):
        best = int(row.argmax())
        if best != token:
            gap = float(row[best] - row[token])
            assert gap <= slack, (
                f"step {step}: llama.cpp chose {token}, transformers {best} (gap {gap:.4f})"
            )
            return


def assert_runs_like_transformers(
    gguf: Path, model: Any, tokenizer: Any, prompts: list[str], tolerance: float, greedy: int
) -> None:
    """llama.cpp running `gguf` gives transformers' logits on every prompt (relative error
    within `tolerance` over every position, the same argmax everywhere) and its `greedy`
    token continuation."""
    llm = load_llama(gguf, logits_all=True)
    try:
        check_prompts(llm, model, tokenizer, prompts, tolerance, greedy)
    finally:
        llm.close()


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|: one number per comparison."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def check_prompts(
    llm: Any, model: Any, tokenizer: Any, prompts: list[str], tolerance: float, greedy: int
) -> None:
    """On every prompt: llama.cpp's logits at every position within `tolerance` (relative)
    of transformers', the same argmax everywhere, the same `greedy`-token continuation."""
    for prompt in prompts:
        ids = tokenizer(prompt)["input_ids"]
        ours, ref = llama_logits(llm, ids), hf_logits(model, ids)
        assert ours.shape == ref.shape
        err = relative_error(ours, ref)
        assert err <= tolerance, f"{prompt!r}: relative error {err:.2e}"
        assert (ours.argmax(-1) == ref.argmax(-1)).all(), prompt
        check_greedy(llm, model, ids, greedy)


def assert_tokenizes_like(gguf: Path, tokenizer: Any) -> None:
    """llama.cpp, reading only `gguf`'s vocabulary, gives `tokenizer`'s ids on every shared
    test text (BOS/EOS insertion and special tokens included)."""
    from tests.toolchain.convert.corpus import TEXTS

    llm = load_llama(gguf, vocab_only=True)
    try:
        for text in TEXTS:
            assert (
                llm.tokenize(text.encode(), add_bos=True, special=True)
                == tokenizer(text)["input_ids"]
            ), text
    finally:
        llm.close()
