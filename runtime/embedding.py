"""Embeddings: pooled vectors from embeddings contexts, batched across requests.

Requests' inputs are batched continuously. `submit` queues a request (from any thread);
each `step` admits waiting requests (up to `max_jobs` at once, the model's
`num_parallel`), packs their inputs oldest first into one forward pass of at most
`pass_tokens` tokens (more when one input needs it) and `MAX_SEQS` sequences on one of the
embedder's contexts, and hands each request whose inputs are all done its vectors. Each
input is its own sequence and attends only to itself, so a request gets the vectors it
would get alone (to float rounding), whichever pass or context computed them.

An embedder has one context stepped by its caller (a generative model's engine thread,
between decode steps), or, once `start`ed, `contexts` contexts, each with its own worker
thread taking passes from the one queue (an embedding model: its passes run in parallel).
A pass that runs alone (nothing else queued or running) takes `lone_threads`, so one
request on an idle server is not held to one core. Such passes all run on the first
worker (the others take work only while a pass runs), so the process holds one OpenMP
pool, and that worker frees it once idle for `POOL_LINGER` (runtime/openmp.py: left
there, it slowed a chat model loaded beside the embedding model by a third).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import llama_cpp as lc
import numpy as np

from runtime.embed_context import FA_TILE, EmbedContext, filler_tokens
from runtime.errors import ApiError
from runtime.llama import POOLING, ContextSettings, LlamaModel
from runtime.openmp import release_thread_pool

MAX_SEQS = 64
#: tokens per forward pass unless one input needs more. An encoder attends over the whole
#: pass (masked per sequence), so a bigger pass costs attention per token while the matrix
#: products are already wide at a few hundred rows. Measured on all-MiniLM-L6-v2 F16 with
#: flash attention (which skips the masked keys; without it every size runs at 550-900
#: tokens per CPU-second), one thread, in CPU time (immune to the machine's load): 64 texts
#: of ~97 tokens, tokens per CPU-second: 128: 2201, 256: 2387, 512: 2226, 1024: 1913;
#: 40 texts, CPU seconds: 100: 1.57, 200: 1.53, 300: 1.58, 400: 1.57, 500: 1.55 (flat).
#: Small passes also share a request's inputs out evenly over the contexts.
PASS_TOKENS = 256
#: seconds a worker keeps the OpenMP pool of its last multi-threaded pass while idle: one
#: request after another reuse it (starting its thread again costs ~0.1-0.4 ms a pass)
POOL_LINGER = 0.05


@dataclass(frozen=True)
class Embeddings:
    vectors: list[np.ndarray]  # float32, one per input
    prompt_tokens: int


Done = Callable[[Embeddings | BaseException], None]


@dataclass(eq=False)
class EmbedJob:
    """One request's inputs, and where its result (or its error) goes."""

    texts: list[str]
    truncate: bool
    on_done: Done
    tokens: list[list[int]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    left: int = 0
    failed: bool = False


Group = list[tuple[EmbedJob, int]]


class Embedder:
    """Embeddings contexts over a loaded model and the queue of requests for them.

    `submit` may be called from any thread. Without `start`, `step`, `embed` and `close`
    are called from one thread (the model's engine thread); after it, the workers step
    and `close` stops them.
    """

    def __init__(
        self,
        model: LlamaModel,
        n_ctx: int,
        threads: int,
        *,
        max_jobs: int = MAX_SEQS,
        pass_tokens: int = PASS_TOKENS,
        contexts: int = 1,
        lone_threads: int = 0,
    ) -> None:
        """`n_ctx`: tokens per input (capped at the trained length); `threads`: llama.cpp
        threads per context; `contexts`: contexts the workers use once started;
        `lone_threads`: threads for a worker's pass that runs alone (nothing queued, no
        other pass running), so one request on an idle server uses every core (0:
        `threads`)."""
        self.model = model
        self.n_ctx = max(min(n_ctx, model.n_ctx_train or n_ctx), 8)  # tokens per input
        self.pass_tokens = max(pass_tokens, 1)
        self.capacity = max(self.n_ctx, self.pass_tokens)
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
            # llama.cpp's auto: on for the CPU, where it skips other sequences' keys
            flash_attention=None,
            embeddings=True,
            pooling=pooling,
            kv_unified=True,
        )
        self.contexts = [EmbedContext(model, self.settings) for _ in range(max(contexts, 1))]
        # the first worker's lone passes that llama.cpp's flash attention would run on its
        # per-pair path (a pass of a model without a KV cache under FA_TILE tokens that
        # gets no filler) run without it, on a context sized for them (small attention
        # buffers whatever the model's context): 2 threads, wall ms, 32 tokens 6.3 vs 7.1
        self.short = EmbedContext(
            model,
            replace(
                self.settings,
                n_ctx=FA_TILE,
                n_batch=FA_TILE,
                n_ubatch=FA_TILE,
                n_seq_max=min(self.n_seq, FA_TILE),
                flash_attention=False,
            ),
        )
        self.adds_eos = bool(lc.llama_vocab_get_add_eos(model.vocab)) or bool(
            lc.llama_vocab_get_add_sep(model.vocab)
        )
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # guards everything below; workers wait here
        # but the first worker, which waits on its own: a lone request wakes it alone, not
        # every worker to find nothing it may take (each such wake-up took a core from the
        # pass: ~5 a request)
        self._first = threading.Condition(lock)
        self._admitting = threading.Lock()  # one admission at a time: requests stay in order
        self._incoming: collections.deque[EmbedJob] = collections.deque()
        self._scheduled = False
        self._jobs: list[EmbedJob] = []  # admitted and not finished
        self._todo: collections.deque[tuple[EmbedJob, int]] = collections.deque()
        self._workers: list[threading.Thread] = []
        self._closing = False
        self._running = 0  # passes running now
        self.lone_threads = lone_threads or threads

    def start(self) -> None:
        """One worker thread per context, stepping while there is work."""
        for i, context in enumerate(self.contexts):
            worker = threading.Thread(
                target=self._work, args=(context, i == 0), name=f"embed {i}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._wake(everyone=True)
        for worker in self._workers:
            worker.join()
        self._workers = []
        with self._cond:
            waiting = [*self._jobs, *self._incoming]
            self._jobs, self._incoming = [], collections.deque()
            self._todo.clear()
        for job in waiting:
            job.on_done(ApiError(500, "model unloaded"))
        for context in [*self.contexts, self.short]:
            context.close()

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
        """Queue `job`. True when the caller must schedule a `step` (none is pending and
        no workers run)."""
        with self._cond:
            self._incoming.append(job)
            if self._workers:
                self._wake()
                return False
            schedule = not self._scheduled
            self._scheduled = True
        return schedule

    def step(self) -> bool:
        """Admit waiting requests and run one forward pass on the first context. True while
        work remains (the caller schedules another step; other engine work runs between)."""
        self._step(self.contexts[0])
        with self._cond:
            more = bool(self._todo) or bool(self._incoming)
            self._scheduled = more
        return more

    def embed(self, texts: list[str], truncate: bool = True) -> Embeddings:
        """Raw pooled vectors for `texts` (not normalised), now (by the workers once
        started)."""
        results: list[Embeddings | BaseException] = []
        finished = threading.Event()

        def done(result: Embeddings | BaseException) -> None:
            results.append(result)
            finished.set()

        self.submit(EmbedJob(texts, truncate, done))
        if self._workers:
            finished.wait()
        while not results:
            self.step()
        result = results[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _work(self, context: EmbedContext, first: bool) -> None:
        pooled = False  # this thread holds an OpenMP pool (from a multi-threaded pass)
        while True:
            with self._cond:
                idle = self._wait_for_work(POOL_LINGER if pooled else None, first)
                if self._closing:
                    return
            if idle:
                # outside the lock, the pass's requests answered: a pool left here would
                # make a co-loaded chat model's barriers sleep
                release_thread_pool()
                pooled = False
                continue
            # the others' passes stay single-threaded even when they end up alone (a race)
            pooled = self._step(context, self.lone_threads if first else 0) > 1 or pooled

    def _wait_for_work(self, timeout: float | None, first: bool = True) -> bool:
        """Under the lock: wait for work (or closing); True when `timeout` seconds passed
        without any. Only the `first` worker takes work while no pass runs: a pass that
        runs alone, multi-threaded, always runs on its thread, so the process holds one
        OpenMP pool, not one per worker. Two pools (2 + 2 threads on 2 CPUs) make
        libgomp's barriers sleep instead of spin: a one-text pass took 6-9 ms instead of
        ~2, its second thread woken too late to take much of the work."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closing and not (self._has_work() and (first or self._running > 0)):
            if deadline is None:
                (self._first if first else self._cond).wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            (self._first if first else self._cond).wait(left)
        return False

    def _wake(self, everyone: bool = False) -> None:
        """Under the lock: wake the workers that may take work now (the first one; the
        others only while a pass runs, see `_wait_for_work`)."""
        self._first.notify_all()
        if everyone or self._running > 0:
            self._cond.notify_all()

    def _has_work(self) -> bool:
        """Inputs to take, or requests that may be admitted (not while `max_jobs` are
        in flight: their last inputs may all be in passes on other contexts)."""
        return bool(self._todo) or (bool(self._incoming) and len(self._jobs) < self.max_jobs)

    def _step(self, context: EmbedContext, lone_threads: int = 0) -> int:
        """Admit, take and run one pass (with `lone_threads` if it runs alone); the
        threads it ran with (0: no pass)."""
        self._admit()
        group, alone = self._take()
        if not group:
            return 0
        threads = lone_threads if alone and lone_threads else context.settings.n_threads
        if alone and lone_threads and self._per_pair(context, group):
            context = self.short
        try:
            vectors = context.run([job.tokens[i] for job, i in group], threads)
        except Exception as exc:  # this pass's requests fail, the queue goes on
            self._fail(group, exc)
            return threads
        finally:
            with self._cond:
                self._running -= 1
        self._finish(group, vectors)
        return threads

    def _per_pair(self, context: EmbedContext, group: Group) -> bool:
        """Whether a pass of `group` on `context` takes flash attention's per-pair path."""
        context.open()
        lengths = [len(job.tokens[i]) for job, i in group]
        return (
            context.fills
            and sum(lengths) < FA_TILE
            and not filler_tokens(lengths, self.model.n_embd)
        )

    def _admit(self) -> None:
        with self._admitting:
            while True:
                with self._cond:
                    if not self._incoming or len(self._jobs) >= self.max_jobs:
                        return
                    job = self._incoming.popleft()
                try:
                    tokens = [self.tokens_for(t, job.truncate) for t in job.texts]
                except BaseException as exc:
                    job.on_done(exc)
                    continue
                if not tokens:
                    job.on_done(Embeddings([], 0))
                    continue
                with self._cond:
                    job.tokens = tokens
                    job.vectors = [np.empty(0, np.float32)] * len(tokens)
                    job.left = len(tokens)
                    self._jobs.append(job)
                    self._todo.extend((job, i) for i in range(len(tokens)))
                    self._wake()

    def _take(self) -> tuple[Group, bool]:
        """The oldest waiting inputs that fit one pass, and whether the pass runs alone."""
        group: Group = []
        used = 0
        with self._cond:
            while self._todo and len(group) < self.n_seq:
                job, i = self._todo[0]
                size = len(job.tokens[i])
                if group and used + size > self.pass_tokens:
                    break
                group.append(self._todo.popleft())
                used += size
            if group:
                self._running += 1
            alone = self._running == 1 and not self._todo and not self._incoming
            if group and not alone:
                self._wake()  # the other workers may take the rest now
        return group, alone

    def _finish(self, group: Group, vectors: list[np.ndarray]) -> None:
        done: list[EmbedJob] = []
        with self._cond:
            for (job, i), vector in zip(group, vectors, strict=True):
                if job.failed:
                    continue
                job.vectors[i] = vector
                job.left -= 1
                if job.left == 0:
                    self._jobs.remove(job)
                    done.append(job)
            if done:
                self._wake()  # room for waiting requests
        for job in done:
            job.on_done(Embeddings(job.vectors, sum(len(t) for t in job.tokens)))

    def _fail(self, group: Group, exc: BaseException) -> None:
        failed: list[EmbedJob] = []
        with self._cond:
            for job, _ in group:
                if not job.failed:
                    job.failed = True
                    self._jobs.remove(job)
                    failed.append(job)
            self._todo = collections.deque(item for item in self._todo if not item[0].failed)
            self._wake(everyone=True)
        for job in failed:
            job.on_done(exc)


def finish_vectors(raw: list[np.ndarray], dimensions: int | None) -> np.ndarray:
    """The reference's /api/embed vectors, (n, d) float32: L2-normalised, cut to
    `dimensions` and renormalised."""
    if not raw:
        return np.zeros((0, 0), np.float32)
    vecs = np.stack(raw).astype(np.float32, copy=False)
    if not np.all(np.isfinite(vecs)):
        raise ApiError(400, "embedding contains NaN or Inf values")
    vecs = _normalize_rows(vecs)
    if dimensions is not None and 0 < dimensions < vecs.shape[1]:
        vecs = _normalize_rows(vecs[:, :dimensions])
    return vecs


def _normalize_rows(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    out: np.ndarray = np.divide(vecs, norms, out=vecs.copy(), where=norms > 0)
    return out


def check_finite(raw: np.ndarray) -> np.ndarray:
    """The legacy /api/embeddings vector, as the reference's float64s."""
    if not np.all(np.isfinite(raw)):
        raise ApiError(400, "embedding contains NaN or Inf values")
    return raw.astype(np.float64)
