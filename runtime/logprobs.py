"""Log probabilities of generated tokens, as the reference returns them (`logprobs`).

`token_logprob` reads one step's logits (llama_get_logits_ith) and computes, in numpy, the
log-softmax of the tokens it reports; the engine calls it on its own thread, and only for
requests that ask. A token's entry travels with the text it produced: `PendingLogprobs`
holds entries until their text is released (held back text may still become a stop
string), and drops those of tokens that only made up a stop string, as the reference
truncates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
import numpy as np

from runtime.llama import LlamaModel

#: the reference's bound on `top_logprobs`
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class TokenLogprob:
    """One token's log probability; `top` holds the most likely alternatives at that step."""

    token: str
    logprob: float
    raw: bytes
    top: tuple[TokenLogprob, ...] = ()

    def to_ollama(self) -> dict[str, Any]:
        """The reference's `api.Logprob` (empty `bytes` / `top_logprobs` left out)."""
        out: dict[str, Any] = {"token": self.token, "logprob": self.logprob}
        if self.raw:
            out["bytes"] = list(self.raw)
        if self.top:
            out["top_logprobs"] = [t.to_ollama() for t in self.top]
        return out


def log_sum_exp(logits: np.ndarray) -> float:
    """log(sum(exp(logits))), stable (max subtracted), summed in float64: a token's
    log-softmax is its logit minus this."""
    top = float(logits.max())
    return top + float(np.log(np.exp(logits - np.float32(top)).sum(dtype=np.float64)))


def token_logprob(ctx: Any, index: int, token: int, model: LlamaModel, top: int) -> TokenLogprob:
    """The entry for `token`, sampled from the logits at batch position `index` of `ctx`
    (with its `top` most likely alternatives). One pass of exp over the vocabulary; the
    full log-softmax row is never built."""
    n_vocab, piece = model.n_vocab, model.piece
    logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, index), shape=(n_vocab,))
    lse = log_sum_exp(logits)
    alternatives: tuple[TokenLogprob, ...] = ()
    if top > 0:
        k = min(top, n_vocab)
        best = np.argpartition(logits, n_vocab - k)[n_vocab - k :]
        # most likely first; equal values by token id, so the order is stable
        best = best[np.lexsort((best, -logits[best]))]
        alternatives = tuple(_entry(int(t), float(logits[t]) - lse, piece) for t in best)
    return _entry(token, float(logits[token]) - lse, piece, alternatives)


def _entry(
    token: int, logprob: float, piece: Callable[[int], bytes], top: tuple[TokenLogprob, ...] = ()
) -> TokenLogprob:
    raw = piece(token)
    return TokenLogprob(raw.decode("utf-8", errors="replace"), logprob, raw, top)


class PendingLogprobs:
    """Entries of generated tokens whose text has not been released yet.

    Offsets count decoded characters of the whole generation: a token spans
    [start, end); it is released once any of its text is, or all text before it is.
    """

    def __init__(self) -> None:
        self._items: list[tuple[int, int, TokenLogprob]] = []
        self._released = 0

    def add(self, start: int, end: int, entry: TokenLogprob) -> None:
        self._items.append((start, end, entry))

    def release(self, chars: int) -> tuple[TokenLogprob, ...]:
        """The entries whose text the next `chars` released characters include."""
        self._released += chars
        out = [e for s, end, e in self._items if s < self._released or end <= self._released]
        self._items = self._items[len(out) :]
        return tuple(out)

    def rest(self) -> tuple[TokenLogprob, ...]:
        """Everything still pending (the generation ended without a stop string)."""
        out = tuple(e for _, _, e in self._items)
        self._items = []
        return out

    def drop(self) -> None:
        """Forget what is pending: those tokens only made up a stop string."""
        self._items = []
