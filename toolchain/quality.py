"""How much a quantized model lost: perplexity, and KL divergence / top-token agreement
against a base model's logits, computed as `llama-perplexity --kl-divergence` does.

The text is tokenized once (with BOS, as `common_tokenize` does) and cut into chunks of
`n_ctx` tokens; each chunk is evaluated from an empty cache with its first token replaced
by BOS, and only the second half of each chunk is scored (the first half is context).
The base model's log-probabilities are kept as llama-perplexity keeps them in its
`--kl-divergence-base` file: per token a scale, a minimum and 16-bit levels, so the
numbers here are the numbers that tool prints for the same text, context and batch.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from toolchain.errors import MfcError

F32 = np.float32
_MAGIC = F32(12582912.0)


class EvalError(MfcError):
    """The evaluation cannot be done (text too short, vocabularies differ, ...)."""


@dataclass(frozen=True, slots=True)
class BaseLogProbs:
    """llama-perplexity's compressed log-probabilities of the scored tokens of every chunk."""

    tokens: npt.NDArray[np.int32]  # (n_chunk, n_ctx)
    scale: npt.NDArray[np.float32]  # (n_chunk * scored,)
    min_log_prob: npt.NDArray[np.float32]
    levels: npt.NDArray[np.uint16]  # (n_chunk * scored, n_vocab)
    ppl: float


@dataclass(frozen=True, slots=True)
class Quality:
    """One model's scores against the base (the numbers llama-perplexity prints)."""

    path: str
    file_type: str
    size: int  # bytes of the model's tensors (llama_model_size)
    bpw: float  # bits per weight
    ppl: float
    base_ppl: float
    kld_mean: float
    kld_p99: float
    kld_max: float
    top1: float  # fraction of tokens whose most likely next token is the base's
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """llama.cpp logs from C to stderr: silence the descriptor while a model loads."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _Model:
    """A model loaded for scoring: one sequence of `n_ctx` tokens per pass."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None) -> None:
        import llama_cpp

        with quiet_stderr():
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                logits_all=True,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=True,
                verbose=False,
            )
        model = self.llm.model
        self.n_vocab = int(self.llm.n_vocab())
        self.bos = int(self.llm.token_bos())
        vocab = llama_cpp.llama_model_get_vocab(model)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        self.size = int(llama_cpp.llama_model_size(model))
        self.n_params = int(llama_cpp.llama_model_n_params(model))
        self.file_type = str(self.llm.metadata.get("general.file_type", ""))

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=True, special=False))

    def logits(self, chunk: npt.NDArray[np.int32], first: int) -> npt.NDArray[np.float32]:
        """Logits of positions first..n_ctx-2 of one chunk (BOS in front, empty cache)."""
        tokens = [int(t) for t in chunk]
        if self.add_bos:
            tokens[0] = self.bos
        self.llm.reset()  # type: ignore[no-untyped-call]
        self.llm.eval(tokens)
        return np.array(self.llm.scores[first : len(tokens) - 1], dtype=F32)

    def close(self) -> None:
        self.llm.close()


def _nearest_int(v: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
    with np.errstate(invalid="ignore", over="ignore"):
        val = (v + _MAGIC).astype(F32)
    return ((val.view(np.int32) & 0x7FFFFF) - 0x400000).astype(np.int64)


def _log_sum_exp(logits: npt.NDArray[np.float32], top: npt.NDArray[np.float32]) -> Any:
    """`(float)log(sum_double(expf(l - max)))` per row."""
    e = np.exp((logits - top[:, None]).astype(F32)).astype(np.float64)
    return np.log(e.sum(axis=1)).astype(F32)


def compress(logits: npt.NDArray[np.float32]) -> tuple[Any, Any, Any]:
    """Scale, minimum log-prob and 16-bit levels of each row, as llama-perplexity's
    `log_softmax(..., uint16_t * log_prob, ...)` writes them."""
    top = logits.max(axis=1)
    low = np.maximum(logits.min(axis=1), (top - F32(16.0)).astype(F32))
    lse = _log_sum_exp(logits, top)
    min_log_prob = ((low - top).astype(F32) - lse).astype(F32)
    scale = ((top - low).astype(F32) / F32(65535.0)).astype(F32)
    with np.errstate(divide="ignore"):
        inv = np.where(scale != 0, F32(1.0) / scale, F32(0.0)).astype(F32)
    lv = _nearest_int((inv[:, None] * (logits - low[:, None]).astype(F32)).astype(F32))
    levels = np.where(logits > low[:, None], lv, 0).astype(np.uint16)
    return scale, min_log_prob, levels


def chunks_of(tokens: list[int], n_ctx: int, max_chunks: int | None) -> npt.NDArray[np.int32]:
    """llama-perplexity's chunks: whole windows of n_ctx tokens (at least two needed)."""
    if len(tokens) < 2 * n_ctx:
        raise EvalError(
            f"the text tokenizes to {len(tokens)} tokens; a context of {n_ctx} needs at "
            f"least {2 * n_ctx}",
            hint="give more text or a smaller --ctx",
        )
    n = len(tokens) // n_ctx
    if max_chunks is not None:
        n = min(n, max_chunks)
    return np.array(tokens[: n * n_ctx], dtype=np.int32).reshape(n, n_ctx)


Progress = Callable[[str, int, int], None]


def base_log_probs(
    base: Path,
    text: str,
    n_ctx: int,
    *,
    max_chunks: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> BaseLogProbs:
    """Evaluate the base model over the text (`llama-perplexity --kl-divergence-base`)."""
    m = _Model(base, n_ctx, threads)
    try:
        chunks = chunks_of(m.tokenize(text), n_ctx, max_chunks)
        first = n_ctx // 2
        parts, nll = [], 0.0
        for i, chunk in enumerate(chunks):
            logits = m.logits(chunk, first)
            parts.append(compress(logits))
            top = logits.max(axis=1)
            target = chunk[first + 1 :]
            own = logits[np.arange(target.size), target]
            lse = np.log(np.exp((logits - top[:, None]).astype(F32)).astype(np.float64).sum(axis=1))
            nll += float(np.sum(-((own - top).astype(F32) - lse)))
            if progress:
                progress("base", i + 1, len(chunks))
    finally:
        m.close()
    count = len(chunks) * (n_ctx - 1 - first)
    return BaseLogProbs(
        chunks,
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        math.exp(nll / count),
    )


def _percentile(values: npt.NDArray[np.float32], fraction: float) -> float:
    """llama-perplexity's linear interpolation between sorted values (in float)."""
    p = F32(fraction) * F32(values.size - 1)
    ip = int(p)
    p = F32(p - F32(ip))
    hi = values[min(ip + 1, values.size - 1)]
    return float((F32(1.0) - p) * values[ip] + p * hi)


def score(
    model: Path,
    base: BaseLogProbs,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Quality:
    """Perplexity of `model` and its KL divergence from the base (`--kl-divergence`)."""
    n_chunk, n_ctx = base.tokens.shape
    first = n_ctx // 2
    scored = n_ctx - 1 - first
    m = _Model(model, n_ctx, threads)
    try:
        if m.n_vocab != base.levels.shape[1]:
            raise EvalError(
                f"{model.name} has {m.n_vocab} tokens in its vocabulary, the base "
                f"{base.levels.shape[1]}",
                hint="compare models of the same vocabulary",
            )
        sum_nll = sum_nll_base = 0.0
        same_top = 0
        klds = []
        for c in range(n_chunk):
            logits = m.logits(base.tokens[c], first)
            rows = slice(c * scored, (c + 1) * scored)
            scale, mlp, levels = base.scale[rows], base.min_log_prob[rows], base.levels[rows]
            target = base.tokens[c, first + 1 :]
            idx = np.arange(scored)
            top = logits.max(axis=1)
            lse = _log_sum_exp(logits, top)
            nll = ((top + lse).astype(F32) - logits[idx, target]).astype(F32)
            nll_base = -((scale * levels[idx, target].astype(F32)).astype(F32) + mlp)
            shifted = (top + lse).astype(F32)
            plb = ((scale[:, None] * levels.astype(F32)).astype(F32) + mlp[:, None]).astype(F32)
            terms = (np.exp(plb) * ((plb - logits).astype(F32) + shifted[:, None])).astype(F32)
            kld = np.where(plb > F32(-16.0), terms, F32(0.0)).astype(np.float64).sum(axis=1)
            klds.append(kld.astype(F32))
            same_top += int(np.sum(np.argmax(logits, axis=1) == np.argmax(plb, axis=1)))
            sum_nll += float(nll.astype(np.float64).sum())
            sum_nll_base += float(nll_base.astype(np.float64).sum())
            if progress:
                progress(model.name, c + 1, n_chunk)
        values = np.concatenate(klds)
        count = values.size
        sorted_kld = np.sort(values)
        bits = 8.0 * m.size / m.n_params if m.n_params else 0.0
        return Quality(
            str(model),
            _file_type_name(m.file_type),
            m.size,
            bits,
            math.exp(sum_nll / count),
            math.exp(sum_nll_base / count),
            float(values.astype(np.float64).sum() / count),
            _percentile(sorted_kld, 0.99),
            float(sorted_kld[-1]),
            same_top / count,
            count,
        )
    finally:
        m.close()


def _file_type_name(value: str) -> str:
    from toolchain.store.config import file_type_name

    return file_type_name(int(value)) if value.isdigit() else "unknown"
