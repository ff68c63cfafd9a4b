"""Embeddings: pooled vectors from an embeddings context, truncated and normalised."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
import numpy as np

from runtime.errors import ApiError
from runtime.llama import POOLING, ContextSettings, LlamaModel

MAX_SEQS = 64


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


def normalize(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


class Embedder:
    """An embeddings context over a loaded model. Use it on the model's engine thread only."""

    def __init__(self, model: LlamaModel, n_ctx: int, threads: int) -> None:
        self.model = model
        self.n_ctx = max(min(n_ctx, model.n_ctx_train or n_ctx), 8)
        # A model without a pooling type (a generative model) is mean-pooled.
        pooling = POOLING[model.pooling_type or "mean"]
        self.settings = ContextSettings(
            n_ctx=self.n_ctx,
            n_seq_max=MAX_SEQS,
            n_batch=self.n_ctx,
            n_ubatch=self.n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            embeddings=True,
            pooling=pooling,
            kv_unified=True,
        )
        self.ctx = model.new_context(self.settings)
        self.mem = lc.llama_get_memory(self.ctx)
        self.batch = lc.llama_batch_init(self.n_ctx, 0, 1)
        self.encoder_only = model.has_encoder and not model.has_decoder
        self.adds_eos = bool(lc.llama_vocab_get_add_eos(model.vocab)) or bool(
            lc.llama_vocab_get_add_sep(model.vocab)
        )

    def close(self) -> None:
        if self.batch is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None

    def tokens_for(self, text: str, truncate: bool) -> list[int]:
        tokens = self.model.tokenize(text, add_special=True, parse_special=False)
        if len(tokens) <= self.n_ctx:
            return tokens
        if not truncate:
            raise ApiError(400, "the input length exceeds the context length")
        if self.adds_eos:
            return [*tokens[: self.n_ctx - 1], tokens[-1]]
        return tokens[: self.n_ctx]

    def embed(self, texts: list[str], truncate: bool = True) -> Embeddings:
        """Raw pooled vectors for `texts` (not normalised), packed into as few batches as fit."""
        token_lists = [self.tokens_for(t, truncate) for t in texts]
        vectors: list[list[float]] = [[] for _ in texts]
        group: list[int] = []
        used = 0
        for i, tokens in enumerate(token_lists):
            if group and (used + len(tokens) > self.n_ctx or len(group) == MAX_SEQS):
                self._run(group, token_lists, vectors)
                group, used = [], 0
            group.append(i)
            used += len(tokens)
        if group:
            self._run(group, token_lists, vectors)
        return Embeddings(vectors, sum(len(t) for t in token_lists))

    def _run(self, group: list[int], token_lists: list[list[int]], out: list[list[float]]) -> None:
        batch: Any = self.batch
        lc.llama_memory_clear(self.mem, True)
        n = 0
        for seq, i in enumerate(group):
            for pos, token in enumerate(token_lists[i]):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        rc = (
            lc.llama_encode(self.ctx, batch)
            if self.encoder_only
            else lc.llama_decode(self.ctx, batch)
        )
        if rc != 0:
            raise ApiError(500, f"failed to compute embeddings (llama.cpp returned {rc})")
        dim = self.model.n_embd
        for seq, i in enumerate(group):
            ptr = lc.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise ApiError(500, "failed to compute embeddings: no pooled output")
            vec = np.ctypeslib.as_array(ptr, shape=(dim,)).astype(np.float64)
            out[i] = vec.tolist()


def finish_vector(raw: list[float], dimensions: int | None) -> list[float]:
    """The reference's /api/embed vector: L2-normalised, cut to `dimensions` and renormalised."""
    vec = np.asarray(raw, dtype=np.float32)
    if not np.all(np.isfinite(vec)):
        raise ApiError(400, "embedding contains NaN or Inf values")
    vec = normalize(vec)
    if dimensions is not None and 0 < dimensions < len(vec):
        vec = normalize(vec[:dimensions])
    return [float(x) for x in vec]


def check_finite(raw: list[float]) -> list[float]:
    if not all(math.isfinite(x) for x in raw):
        raise ApiError(400, "embedding contains NaN or Inf values")
    return raw
