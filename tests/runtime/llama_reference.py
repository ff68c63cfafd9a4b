"""llama-cpp-python's `Llama`, in the test process, as the reference for what the server
must generate: greedy decoding with llama.cpp's repetition penalties (applied in numpy to
the logits of each step), seeded sampling through llama-cpp-python's own sampler chain,
and each step's logits for log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llama_cpp import Llama, llama_vocab_is_eog


@dataclass(frozen=True)
class Step:
    token: int
    logits: np.ndarray  # the raw logits the token was chosen from (float32)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    row = logits.astype(np.float64)
    return row - (row.max() + np.log(np.exp(row - row.max()).sum()))


def penalize(
    logits: np.ndarray, window: list[int], repeat: float, frequency: float, presence: float
) -> np.ndarray:
    """llama.cpp's penalties sampler: a token seen `c` times in the window has its logit
    divided by `repeat` (multiplied when not positive), then `c * frequency + presence`
    subtracted."""
    out = logits.astype(np.float32).copy()
    ids, counts = np.unique(np.asarray(window, dtype=np.int64), return_counts=True)
    if ids.size == 0:
        return out
    seen = out[ids]
    seen = np.where(seen <= 0, seen * np.float32(repeat), seen / np.float32(repeat))
    seen = seen - (counts.astype(np.float32) * np.float32(frequency) + np.float32(presence))
    out[ids] = seen
    return out


class Reference:
    """One GGUF loaded with llama-cpp-python's high-level API (logits of every position,
    flash attention on: compare with a server started with OLLAMA_FLASH_ATTENTION=1).

    Flash attention, because without it llama.cpp 0.3.36's CPU attention gives another
    answer for a prompt's last token decoded alone after its cached prefix (what a server
    does for a repeated prompt) than for the whole prompt decoded at once: up to 0.7 in
    the logits of SmolLM2, for some prompt lengths. With it, both agree exactly.
    """

    def __init__(self, gguf: Path, n_ctx: int = 2048) -> None:
        self.llm = Llama(str(gguf), n_ctx=n_ctx, logits_all=True, verbose=False, flash_attn=True)
        self.vocab = self.llm._model.vocab

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def text(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens, special=True).decode("utf-8", errors="replace")

    def piece(self, token: int) -> bytes:
        """A token's bytes as generated text (special tokens rendered)."""
        return bytes(self.llm._model.detokenize([token], special=True))

    def is_eog(self, token: int) -> bool:
        return bool(llama_vocab_is_eog(self.vocab, token))

    def greedy(
        self,
        prompt: list[int],
        n: int,
        *,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_last_n: int = 64,
    ) -> list[Step]:
        """Greedy decoding of up to `n` tokens (an end-of-generation token ends it, unlisted);
        penalties look at the last `repeat_last_n` tokens of prompt + output, as the
        server's sampler, which is fed the prompt, does (-1: the whole context)."""
        self.llm.reset()
        self.llm.eval(prompt)
        history = list(prompt)
        steps: list[Step] = []
        penalizes = repeat_last_n != 0 and (
            repeat_penalty != 1.0 or frequency_penalty != 0.0 or presence_penalty != 0.0
        )
        for _ in range(n):
            logits = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
            scored = logits
            if penalizes:
                window = history if repeat_last_n < 0 else history[-repeat_last_n:]
                scored = penalize(
                    logits, window, repeat_penalty, frequency_penalty, presence_penalty
                )
            token = int(np.argmax(scored))
            if self.is_eog(token):
                break
            steps.append(Step(token, logits))
            history.append(token)
            self.llm.eval([token])
        return steps

    def sampled(
        self,
        prompt: list[int],
        n: int,
        *,
        seed: int,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float = 0.0,
        typical_p: float = 1.0,
    ) -> list[int]:
        """Up to `n` tokens drawn by llama-cpp-python's chain (top-k, typical, top-p, min-p,
        temperature, seeded draw) with these values."""
        self.llm.reset()
        self.llm.set_seed(seed)
        out: list[int] = []
        for token in self.llm.generate(
            prompt,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            typical_p=typical_p,
            temp=temperature,
            repeat_penalty=1.0,
        ):
            if self.is_eog(token) or len(out) == n:
                break
            out.append(int(token))
        return out
