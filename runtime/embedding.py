"""Embeddings: pooled vectors from an embeddings context, batched across requests.

Requests' inputs are batched continuously. `submit` queues a request (from any thread);
each `step`, run as one task on the model's engine thread, admits waiting requests (up to
`max_jobs` at once, the model's `num_parallel`), packs their inputs oldest first into one
forward pass of at most `pass_tokens` tokens and `MAX_SEQS` sequences, and hands each
request whose inputs are all done its vectors. Each input is its own sequence and attends
only to itself, so a request gets the vectors it would get alone (to float rounding).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as lc
import numpy as np

from runtime.errors import ApiError
from runtime.llama import POOLING, ContextSettings, LlamaModel

MAX_SEQS = 64
#: tokens per forward pass (n_batch = n_ubatch) unless one input needs more. An encoder
#: attends over the whole pass (masked per sequence), so a bigger pass costs attention per
#: token while the matrix products are already wide at a few hundred rows. Measured on
#: all-MiniLM-L6-v2 F16, 32 texts of ~97 tokens (tokens/s, best of 3, one thread, shared
#: machine): 512: 810, 1024: 625, 2048: 677, 4096: 470; with two threads the machine's
#: load drowned the differences (250-315 for all sizes). Again in CPU time (immune to the
#: load), 64 texts of ~97 tokens, one thread, tokens per CPU-second: 128: 2201, 256: 2387,
#: 512: 2226, 1024: 1913 (sentence-transformers fp32 on the same texts: 2851). Flash
#: attention, which llama.cpp turns on by default (`auto`) on the CPU, skips the masked
#: keys: with it off every size runs at 550-900 tokens per CPU-second. llama.cpp's pass
#: is ~95% of the engine side's CPU time (cProfile; tokenizing, laying out the batch and
#: pooling are the rest), so the remaining gap to sentence-transformers is llama.cpp's
#: F16 kernels against torch's fp32 ones, not anything chosen here.
PASS_TOKENS = 512


@dataclass(frozen=True)
class Embeddings:
    vectors: list[np.ndarray]  # float32, one per input
    prompt_tokens: int


Done = Callable[[Embeddings | BaseException], None]


@dataclass
class EmbedJob:
    """One request's inputs, and where its result (or its error) goes."""

    texts: list[str]
    truncate: bool
    on_done: Done
    tokens: list[list[int]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    left: int = 0


class Embedder:
    """An embeddings context over a loaded model and the queue of requests for it.

    `submit` may be called from any thread; `step`, `embed` and `close` only from the
    model's engine thread (or, with no engine, from one thread).
    """

    def __init__(
        self,
        model: LlamaModel,
        n_ctx: int,
        threads: int,
        max_jobs: int = MAX_SEQS,
        pass_tokens: int = PASS_TOKENS,
    ) -> None:
        self.model = model
        self.n_ctx = max(min(n_ctx, model.n_ctx_train or n_ctx), 8)  # tokens per input
        self.capacity = max(self.n_ctx, pass_tokens)
        self.max_jobs = max(max_jobs, 1)
        # llama.cpp reserves one output per sequence within the batch's outputs
        self.n_seq = min(MAX_SEQS, self.capacity)
        # A model without a pooling type (a generative model) is mean-pooled.
        pooling = POOLING[model.pooling_type or "mean"]
        self.settings = ContextSettings(
            n_ctx=self.capacity,
            n_seq_max=self.n_seq,
            n_batch=self.capacity,
            n_ubatch=self.capacity,
            n_threads=threads,
            n_threads_batch=threads,
            embeddings=True,
            pooling=pooling,
            kv_unified=True,
        )
        self.ctx: Any = None
        self.batch: Any = None
        self.encoder_only = model.has_encoder and not model.has_decoder
        self.adds_eos = bool(lc.llama_vocab_get_add_eos(model.vocab)) or bool(
            lc.llama_vocab_get_add_sep(model.vocab)
        )
        self._lock = threading.Lock()
        self._incoming: collections.deque[EmbedJob] = collections.deque()
        self._scheduled = False
        self._jobs: list[EmbedJob] = []  # admitted and not finished
        self._todo: collections.deque[tuple[EmbedJob, int]] = collections.deque()

    def _open(self) -> None:
        if self.ctx is None:
            self.ctx = self.model.new_context(self.settings)
            self.mem = lc.llama_get_memory(self.ctx)
            self.batch = lc.llama_batch_init(self.capacity, 0, 1)

    def close(self) -> None:
        with self._lock:
            waiting = [*self._jobs, *self._incoming]
            self._jobs, self._incoming = [], collections.deque()
            self._todo.clear()
        for job in waiting:
            job.on_done(ApiError(500, "model unloaded"))
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

    # --- the queue -----------------------------------------------------------------------

    def submit(self, job: EmbedJob) -> bool:
        """Queue `job`. True when the caller must schedule a `step` (none is pending)."""
        with self._lock:
            self._incoming.append(job)
            schedule = not self._scheduled
            self._scheduled = True
        return schedule

    def step(self) -> bool:
        """Admit waiting requests and run one forward pass. True while work remains (the
        caller schedules another step; other engine work runs in between)."""
        self._admit()
        if self._todo:
            try:
                self._pass()
            except Exception as exc:  # the jobs in flight fail, the queue goes on
                self._fail_all(exc)
        with self._lock:
            more = bool(self._todo) or bool(self._incoming)
            self._scheduled = more
        return more

    def embed(self, texts: list[str], truncate: bool = True) -> Embeddings:
        """Raw pooled vectors for `texts` (not normalised), run here and now."""
        results: list[Embeddings | BaseException] = []
        self.submit(EmbedJob(texts, truncate, results.append))
        while not results:
            self.step()
        result = results[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._incoming or len(self._jobs) >= self.max_jobs:
                    return
                job = self._incoming.popleft()
            try:
                job.tokens = [self.tokens_for(t, job.truncate) for t in job.texts]
            except BaseException as exc:
                job.on_done(exc)
                continue
            job.vectors = [np.empty(0, np.float32)] * len(job.texts)
            job.left = len(job.texts)
            if not job.left:
                job.on_done(Embeddings([], 0))
                continue
            self._jobs.append(job)
            self._todo.extend((job, i) for i in range(len(job.texts)))

    def _pass(self) -> None:
        """One forward pass over the oldest waiting inputs that fit."""
        self._open()
        group: list[tuple[EmbedJob, int]] = []
        used = 0
        while self._todo and len(group) < self.n_seq:
            job, i = self._todo[0]
            size = len(job.tokens[i])
            if group and used + size > self.capacity:
                break
            group.append(self._todo.popleft())
            used += size
        self._run(group)
        for job, _ in group:
            job.left -= 1
            if job.left == 0:
                self._jobs.remove(job)
                job.on_done(Embeddings(job.vectors, sum(len(t) for t in job.tokens)))

    def _run(self, group: list[tuple[EmbedJob, int]]) -> None:
        batch: Any = self.batch
        lc.llama_memory_clear(self.mem, True)
        n = 0
        for seq, (job, i) in enumerate(group):
            for pos, token in enumerate(job.tokens[i]):
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
        for seq, (job, i) in enumerate(group):
            ptr = lc.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise ApiError(500, "failed to compute embeddings: no pooled output")
            job.vectors[i] = np.ctypeslib.as_array(ptr, shape=(dim,)).copy()

    def _fail_all(self, exc: BaseException) -> None:
        jobs, self._jobs = self._jobs, []
        self._todo.clear()
        for job in jobs:
            job.on_done(exc)


def finish_vectors(raw: list[np.ndarray], dimensions: int | None) -> list[list[float]]:
    """The reference's /api/embed vectors: L2-normalised, cut to `dimensions` and
    renormalised."""
    if not raw:
        return []
    vecs = np.stack(raw).astype(np.float32, copy=False)
    if not np.all(np.isfinite(vecs)):
        raise ApiError(400, "embedding contains NaN or Inf values")
    vecs = _normalize_rows(vecs)
    if dimensions is not None and 0 < dimensions < vecs.shape[1]:
        vecs = _normalize_rows(vecs[:, :dimensions])
    result: list[list[float]] = vecs.tolist()
    return result


def _normalize_rows(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    out: np.ndarray = np.divide(vecs, norms, out=vecs.copy(), where=norms > 0)
    return out


def check_finite(raw: np.ndarray) -> list[float]:
    if not np.all(np.isfinite(raw)):
        raise ApiError(400, "embedding contains NaN or Inf values")
    result: list[float] = raw.astype(np.float64).tolist()
    return result
