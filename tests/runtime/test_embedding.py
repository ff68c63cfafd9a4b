"""Embeddings batched across requests: inputs of concurrent requests share forward passes,
and every request gets the vectors it gets alone (to 1e-6 cosine: an F16 model's kernels
do not depend on what else is in the pass)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import llama_cpp as lc
import numpy as np
import pytest

from runtime.embed_context import FA_TILE, EmbedContext, filler_tokens
from runtime.embedding import Embedder, Embeddings, EmbedJob
from runtime.errors import ApiError
from runtime.llama import LlamaModel
from toolchain.store import Store
from toolchain.store.model import load_model

TEXTS = [
    "The cat sat on the mat.",
    "A kitten sat on a rug by the fire.",
    "Stock markets fell sharply on Monday.",
    "Rain is expected over the weekend in the north.",
    "He plays the violin in a small orchestra.",
    "Photosynthesis turns light into chemical energy.",
    "The train to Lyon leaves at seven.",
    "Bake the bread until the crust is golden.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out: np.ndarray = np.sum(a * b, axis=-1) / norms
    return out


@pytest.fixture(scope="module")
def model(model_store: Path, minilm_model: str) -> Iterator[LlamaModel]:
    """all-MiniLM-L6-v2 F16 as `mfc build` converts it (BERT: llama_encode, CLS+mean)."""
    path = load_model(Store(model_store), minilm_model).model_path
    assert path is not None
    m = LlamaModel(str(path))
    yield m
    m.close()


@pytest.fixture(scope="module")
def alone(model: LlamaModel) -> list[np.ndarray]:
    """Each text embedded by itself, one request at a time."""
    embedder = Embedder(model, 512, threads=1)
    try:
        return [embedder.embed([t]).vectors[0] for t in TEXTS]
    finally:
        embedder.close()


class Jobs:
    """Jobs submitted to an embedder, and what each got back."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.results: dict[int, Embeddings | BaseException] = {}

    def submit(self, key: int, texts: list[str], truncate: bool = True) -> None:
        self.embedder.submit(EmbedJob(texts, truncate, lambda r: self.results.__setitem__(key, r)))

    def vectors(self, key: int) -> list[np.ndarray]:
        result = self.results[key]
        assert isinstance(result, Embeddings), result
        return result.vectors


def test_concurrent_requests_share_one_pass(model: LlamaModel, alone: list[np.ndarray]) -> None:
    embedder = Embedder(model, 512, threads=1, max_jobs=8)
    try:
        jobs = Jobs(embedder)
        jobs.submit(0, TEXTS[0:1])
        jobs.submit(1, TEXTS[1:4])
        jobs.submit(2, TEXTS[4:5])
        jobs.submit(3, TEXTS[5:8])
        assert embedder.step() is False  # one forward pass did all four requests
        assert sorted(jobs.results) == [0, 1, 2, 3]
        got = [*jobs.vectors(0), *jobs.vectors(1), *jobs.vectors(2), *jobs.vectors(3)]
    finally:
        embedder.close()
    assert np.all(cosines(np.array(got), np.array(alone)) > 1 - 1e-6)
    result = jobs.results[1]
    assert isinstance(result, Embeddings)
    assert result.prompt_tokens == sum(len(model.tokenize(t, True, False)) for t in TEXTS[1:4])


def test_num_parallel_bounds_the_requests_in_flight(
    model: LlamaModel, alone: list[np.ndarray]
) -> None:
    embedder = Embedder(model, 512, threads=1, max_jobs=2)
    try:
        jobs = Jobs(embedder)
        for i in range(4):
            jobs.submit(i, [TEXTS[i]])
        assert embedder.step() is True
        assert sorted(jobs.results) == [0, 1]  # the other two wait for the next pass
        assert embedder.step() is False
        assert sorted(jobs.results) == [0, 1, 2, 3]
        got = np.array([jobs.vectors(i)[0] for i in range(4)])
    finally:
        embedder.close()
    assert np.all(cosines(got, np.array(alone[:4])) > 1 - 1e-6)


def test_passes_are_bounded_by_their_token_budget(
    model: LlamaModel, alone: list[np.ndarray]
) -> None:
    """With room for about two texts per pass, eight texts take several passes and each
    request still gets its own vectors, in its order."""
    embedder = Embedder(model, 24, threads=1, pass_tokens=24)
    try:
        jobs = Jobs(embedder)
        jobs.submit(0, TEXTS[:5])
        jobs.submit(1, TEXTS[5:])
        steps = 1
        while embedder.step():
            steps += 1
        got = np.array([*jobs.vectors(0), *jobs.vectors(1)])
    finally:
        embedder.close()
    assert steps >= 3
    assert np.all(cosines(got, np.array(alone)) > 1 - 1e-6)


def test_small_passes_get_a_filler_only_when_it_costs_less() -> None:
    """The policy (runtime/embed_context.py): below 64 tokens a pass pays per query-key
    pair; a filler up to 64 tokens is worth it from about 40 tokens of one 384-wide text,
    not for short texts nor for several shorter ones, and less for a wider model."""
    assert [filler_tokens([n], 384) for n in (14, 36, 40, 50, 63, 64, 97)] == [
        0, 0, 24, 14, 1, 0, 0,
    ]  # fmt: skip
    assert filler_tokens([20, 20], 384) == 0
    assert filler_tokens([30, 30], 384) == 4
    assert filler_tokens([40], 768) == 0 and filler_tokens([56], 768) == 8


def test_a_filled_pass_gives_sentence_transformers_vectors(
    model: LlamaModel, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 50-token text alone runs in a 64-token pass (its filler sequence lifts the pass onto
    llama.cpp's tiled flash attention) and gets the vector it gets without the filler and
    sentence-transformers' vector to F16's precision; two short texts get no filler."""
    from sentence_transformers import SentenceTransformer

    passes: list[int] = []
    decode = lc.llama_decode

    def decode_recorded(ctx: object, batch: lc.llama_batch) -> int:
        passes.append(int(batch.n_tokens))
        return int(decode(ctx, batch))

    monkeypatch.setattr(lc, "llama_decode", decode_recorded)  # the module EmbedContext calls
    text = " ".join(TEXTS[:5])
    short = TEXTS[:2]
    embedder = Embedder(model, 512, threads=1)
    try:
        n = len(embedder.tokens_for(text, True))
        got = embedder.embed([text]).vectors[0]
        got_short = embedder.embed(short).vectors
        embedder.contexts[0].fills = False
        unfilled = embedder.embed([text]).vectors[0]
    finally:
        embedder.close()
    assert 40 < n < FA_TILE
    assert passes == [FA_TILE, sum(len(model.tokenize(t, True, False)) for t in short), n]
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode([text, *short])
    assert cosines(got, unfilled) > 1 - 1e-6
    assert np.all(cosines(np.array([got, *got_short]), reference) > 0.99999)


def test_a_failing_request_leaves_the_others(model: LlamaModel, alone: list[np.ndarray]) -> None:
    embedder = Embedder(model, 16, threads=1, max_jobs=4)
    try:
        jobs = Jobs(embedder)
        jobs.submit(0, ["word " * 40], truncate=False)
        jobs.submit(1, [TEXTS[0]])
        while embedder.step():
            pass
        failed = jobs.results[0]
        assert isinstance(failed, ApiError)
        assert (failed.status, failed.message) == (
            400,
            "the input length exceeds the context length",
        )
        got = jobs.vectors(1)[0]
    finally:
        embedder.close()
    assert cosines(got, alone[0]) > 1 - 1e-6


def test_close_fails_waiting_requests(model: LlamaModel) -> None:
    embedder = Embedder(model, 64, threads=1)
    jobs = Jobs(embedder)
    jobs.submit(0, [TEXTS[0]])
    embedder.close()
    failed = jobs.results[0]
    assert isinstance(failed, ApiError) and failed.status == 500


@pytest.fixture(scope="module")
def url(
    start_server: Callable[..., AbstractContextManager[str]], minilm_model: str
) -> Iterator[str]:
    with start_server({"OLLAMA_NUM_PARALLEL": "4"}) as base:
        yield base


def test_concurrent_http_requests_get_their_own_vectors(url: str, minilm_model: str) -> None:
    """Sixteen /api/embed requests at once (single texts and a batch) on all-MiniLM-L6-v2
    give what the same requests give one at a time."""
    with httpx.Client(base_url=url, timeout=600) as client:

        def embed(texts: list[str]) -> list[list[float]]:
            response = client.post("/api/embed", json={"model": minilm_model, "input": texts})
            assert response.status_code == 200, response.text
            vectors: list[list[float]] = json.loads(response.content)["embeddings"]
            return vectors

        requests = [[t] for t in TEXTS] + [TEXTS[i : i + 3] for i in range(5)] + [TEXTS] * 3
        one_at_a_time = [embed(texts) for texts in requests]
        with ThreadPoolExecutor(len(requests)) as pool:
            together = list(pool.map(embed, requests))
        legacy = client.post(
            "/api/embeddings", json={"model": minilm_model, "prompt": TEXTS[0]}
        ).json()["embedding"]
    for alone_vecs, shared_vecs in zip(one_at_a_time, together, strict=True):
        assert len(alone_vecs) == len(shared_vecs)
        assert np.all(cosines(np.array(shared_vecs), np.array(alone_vecs)) > 1 - 1e-6)
    assert cosines(np.array(legacy), np.array(one_at_a_time[0][0])) > 1 - 1e-6
    assert abs(float(np.linalg.norm(legacy)) - 1) > 1e-3  # the legacy route is not normalised


def test_started_contexts_run_passes_in_parallel(
    model: LlamaModel, alone: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two contexts started, two passes run at once, each on its own context and
    thread, and every request still gets the vectors it gets alone."""

    both_running = threading.Barrier(2, timeout=60)
    used: dict[int, set[int]] = {}
    widths: list[int] = []
    run = EmbedContext.run

    def run_recorded(
        context: EmbedContext, sequences: list[list[int]], threads: int = 0
    ) -> list[np.ndarray]:
        if context is embedder.short:  # a lone short pass, at the end
            return run(context, sequences, threads)
        first = id(context) not in used
        used.setdefault(id(context), set()).add(threading.get_ident())
        widths.append(threads)
        if first:
            both_running.wait()  # broken (and the test failed) unless the other one comes
        return run(context, sequences, threads)

    monkeypatch.setattr(EmbedContext, "run", run_recorded)
    embedder = Embedder(
        model, 512, threads=1, max_jobs=4, pass_tokens=16, contexts=2, lone_threads=2
    )
    embedder.start()
    done = threading.Event()
    jobs = Jobs(embedder)
    try:
        for key in range(4):
            jobs.submit(key, TEXTS[2 * key : 2 * key + 2])
        embedder.submit(EmbedJob([TEXTS[0]], True, lambda r: done.set()))
        assert done.wait(60)
        while len(jobs.results) < 4:
            time.sleep(0.01)
        got = np.array([v for key in range(4) for v in jobs.vectors(key)])
    finally:
        embedder.close()
    assert len(used) == 2
    assert all(len(threads) == 1 for threads in used.values())
    assert len({t for threads in used.values() for t in threads}) == 2
    assert widths[:2] == [1, 1]  # the context's own single thread while others wait
    assert np.all(cosines(got, np.array(alone)) > 1 - 1e-6)


def native_threads_without_python() -> set[int]:
    """This process's threads that no Python thread owns (OpenMP's pool threads)."""
    ours = {t.native_id for t in threading.enumerate()}
    return {int(task.name) for task in Path("/proc/self/task").iterdir()} - ours


@pytest.mark.parametrize(("threads", "contexts"), [(1, 2), (2, 1)])
def test_a_lone_pass_uses_every_thread_and_leaves_no_openmp_pool(
    model: LlamaModel,
    alone: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
    contexts: int,
) -> None:
    """One request on an idle embedder runs its pass with `lone_threads` (an OpenMP team:
    one more native thread) and gets the same vector; once its worker is idle that thread
    is gone, so libgomp manages no more threads than the CPUs beside a chat model's engine
    (more, and that model's barriers sleep: runtime/openmp.py). The same with a wide
    context (MFC_EMBED_CONTEXTS). Closing the embedder stops its workers."""
    seen: list[tuple[int, set[int]]] = []
    run = EmbedContext.run

    def run_recorded(
        context: EmbedContext, sequences: list[list[int]], width: int = 0
    ) -> list[np.ndarray]:
        vectors = run(context, sequences, width)
        seen.append((int(lc.llama_n_threads_batch(context.ctx)), native_threads_without_python()))
        return vectors

    monkeypatch.setattr(EmbedContext, "run", run_recorded)
    before = native_threads_without_python()
    embedder = Embedder(model, 64, threads=threads, contexts=contexts, lone_threads=2)
    embedder.start()
    try:
        got = embedder.embed([TEXTS[0]]).vectors[0]
        [(width, during)] = seen
        pool = during - before
        lingering = pool
        for _ in range(1000):  # the worker frees it after answering
            lingering = pool & native_threads_without_python()
            if not lingering:
                break
            time.sleep(0.01)
        workers = list(embedder._workers)
    finally:
        embedder.close()
    assert width == 2
    assert len(pool) == 1  # the team's second thread, parked in the worker thread's pool
    assert not lingering
    assert not any(w.is_alive() for w in workers)
    assert cosines(got, alone[0]) > 1 - 1e-6


def test_lone_passes_run_on_one_worker_so_the_process_holds_one_openmp_pool(
    model: LlamaModel, alone: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests one after another on an idle embedder: every pass runs alone with two
    threads, always on the same worker, so at most one OpenMP pool (one extra native
    thread) exists. With a pool on each worker libgomp manages 3 threads on 2 CPUs, and
    its barriers sleep instead of spinning (runtime/openmp.py)."""
    passes: list[tuple[int, int, int]] = []
    run = EmbedContext.run

    def run_recorded(
        context: EmbedContext, sequences: list[list[int]], width: int = 0
    ) -> list[np.ndarray]:
        vectors = run(context, sequences, width)
        extra = len(native_threads_without_python() - before)
        passes.append((threading.get_ident(), int(lc.llama_n_threads_batch(context.ctx)), extra))
        return vectors

    monkeypatch.setattr(EmbedContext, "run", run_recorded)
    before = native_threads_without_python()
    embedder = Embedder(model, 64, threads=1, contexts=2, lone_threads=2)
    embedder.start()
    try:
        got = [embedder.embed([TEXTS[i % 2]]).vectors[0] for i in range(20)]
    finally:
        embedder.close()
    assert len({thread for thread, _, _ in passes}) == 1
    assert {width for _, width, _ in passes} == {2}
    assert max(extra for _, _, extra in passes) == 1
    assert np.all(cosines(np.array(got), np.array([alone[i % 2] for i in range(20)])) > 1 - 1e-6)


def test_a_short_lone_pass_runs_without_flash_attention(
    model: LlamaModel, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone pass under FA_TILE tokens that gets no filler runs on the first worker's
    small context without flash attention (its per-pair path costs a 32-token pass ~12%
    more); a longer one on the usual contexts. Both give sentence-transformers' vectors,
    and the same vector for the same text either way."""
    from sentence_transformers import SentenceTransformer

    passes: list[tuple[bool | None, int]] = []
    run = EmbedContext.run

    def run_recorded(
        context: EmbedContext, sequences: list[list[int]], threads: int = 0
    ) -> list[np.ndarray]:
        passes.append((context.settings.flash_attention, context.settings.n_ctx))
        return run(context, sequences, threads)

    monkeypatch.setattr(EmbedContext, "run", run_recorded)
    long_text = " ".join(TEXTS)
    embedder = Embedder(model, 512, threads=1, contexts=2, lone_threads=2)
    embedder.start()
    try:
        assert len(embedder.tokens_for(long_text, True)) > FA_TILE
        short = embedder.embed([TEXTS[0]]).vectors[0]
        long = embedder.embed([long_text]).vectors[0]
        both = embedder.embed([TEXTS[0], long_text]).vectors
    finally:
        embedder.close()
    assert passes[:2] == [(False, FA_TILE), (None, 512)]
    assert all(n_ctx == 512 for _, n_ctx in passes[2:])
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode([TEXTS[0], long_text])
    assert np.all(cosines(np.array([short, long]), reference) > 0.99999)
    assert cosines(short, both[0]) > 1 - 1e-6
    assert cosines(long, both[1]) > 1 - 1e-6


def test_embedding_models_get_one_single_threaded_context_per_thread(
    model_store: Path, minilm_model: str
) -> None:
    """The policy: an embedding model's passes run on one-thread contexts, as many as the
    threads it is given (`num_thread`, MFC_NUM_THREADS, the physical cores), unless
    MFC_EMBED_CONTEXTS asks for fewer, wider ones."""
    from runtime.config import ServerConfig
    from runtime.load_plan import embed_layout
    from runtime.models import Catalog
    from runtime.options import Options
    from runtime.scheduler import Scheduler

    assert embed_layout(2, None) == (2, 1)
    assert embed_layout(8, 2) == (2, 4)
    assert embed_layout(2, 8) == (2, 1)
    assert embed_layout(1, None) == (1, 1)
    assert ServerConfig.from_env({"MFC_EMBED_CONTEXTS": "3"}).embed_contexts == 3
    assert ServerConfig.from_env({}).embed_contexts is None

    served = Catalog(Store(model_store)).get(minilm_model, "missing")
    scheduler = Scheduler(ServerConfig.from_env({}))
    opts = Options(num_thread=2)
    runner = scheduler._load(served, opts, scheduler.runner_key(served, opts), None)
    try:
        embedder = runner.embedder
        assert embedder is not None
        assert len(embedder.contexts) == 2
        assert embedder.settings.n_threads == embedder.settings.n_threads_batch == 1
        assert len(embedder._workers) == 2
        vectors = embedder.embed(TEXTS[:3]).vectors
    finally:
        runner.close()
    assert len(vectors) == 3


def test_workers_wait_rather_than_spin_while_num_parallel_requests_run(
    model: LlamaModel, alone: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `max_jobs` requests in flight (their inputs all in passes), a second request
    waits: the idle worker sleeps until a request finishes instead of polling."""
    release = threading.Event()
    takes: list[int] = []
    run, take = EmbedContext.run, Embedder._take

    def run_held(
        context: EmbedContext, sequences: list[list[int]], threads: int = 0
    ) -> list[np.ndarray]:
        release.wait(60)
        return run(context, sequences, threads)

    def take_counted(embedder: Embedder) -> tuple[list[tuple[EmbedJob, int]], bool]:
        takes.append(1)
        return take(embedder)

    monkeypatch.setattr(EmbedContext, "run", run_held)
    monkeypatch.setattr(Embedder, "_take", take_counted)
    embedder = Embedder(model, 512, threads=1, max_jobs=1, contexts=2)
    embedder.start()
    jobs = Jobs(embedder)
    try:
        jobs.submit(0, [TEXTS[0]])
        jobs.submit(1, [TEXTS[1]])
        time.sleep(0.5)  # job 0's pass is held; job 1 may not be admitted meanwhile
        assert len(takes) < 10
        release.set()
        for _ in range(6000):
            if len(jobs.results) == 2:
                break
            time.sleep(0.01)
        got = np.array([jobs.vectors(0)[0], jobs.vectors(1)[0]])
    finally:
        release.set()
        embedder.close()
    assert np.all(cosines(got, np.array(alone[:2])) > 1 - 1e-6)
