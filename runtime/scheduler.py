"""Which models are loaded: keep_alive, the loaded-model limit, the request queue, /api/ps.

A request `acquire`s a `Lease` on the runner of its model, loading the model first if it
isn't loaded (one load at a time; when `max_loaded_models` are resident, the idle one with
the shortest keep_alive is unloaded first). Releasing the last lease starts the model's
keep_alive timer (0 unloads at once, FOREVER never). At most `max_queue` inference requests
are admitted at once, waiting or running; the next one gets 503 at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.config import ServerConfig
from runtime.durations import FOREVER, MAX_SECONDS, expiry
from runtime.embedding import Embedder, Embeddings, EmbedJob
from runtime.engine import Engine
from runtime.errors import ServerBusyError
from runtime.llama import LlamaModel
from runtime.load_plan import LoadRequest, embed_layout, plan
from runtime.load_probe import LoadProbe
from runtime.models import ServedModel
from runtime.options import Options

log = logging.getLogger("mfc.serve")
T = TypeVar("T")


@dataclass
class Runner:
    """A loaded model: its llama.cpp model, engine thread, and keep_alive state."""

    model: ServedModel
    key: tuple[Any, ...]
    llama: LlamaModel
    engine: Engine
    num_ctx: int
    num_parallel: int
    threads: int
    embedding_only: bool
    session: float  # keep_alive seconds (math.inf: forever)
    refcount: int = 0
    expires_at: float = 0.0  # wall-clock time
    timer: asyncio.TimerHandle | None = None
    embedder: Embedder | None = None  # made with the runner: no llama.cpp context until used

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on this runner's engine thread and wait for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def task() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting request
                loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

        self.engine.call(task)
        return await future

    async def embed(self, texts: list[str], truncate: bool) -> Embeddings:
        """Pooled vectors for `texts`; concurrent requests' inputs share forward passes."""
        embedder = self.embedder
        assert embedder is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Embeddings] = loop.create_future()

        def done(result: Embeddings | BaseException) -> None:
            if isinstance(result, BaseException):
                loop.call_soon_threadsafe(_set_exception, future, result)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

        if embedder.submit(EmbedJob(texts, truncate, done)):
            self.engine.call(self._embed_step)
        return await future

    def _embed_step(self) -> None:
        # one forward pass per engine task, so generation steps interleave with embeddings
        if self.embedder is not None and self.embedder.step():
            self.engine.call(self._embed_step)

    def close(self) -> None:
        self.engine.close()
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None
        self.llama.close()


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@dataclass
class Lease:
    """A request's hold on a runner; `release` exactly once (the API does it in `finally`)."""

    runner: Runner
    scheduler: Scheduler
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.scheduler._release(self.runner)


class Scheduler:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.runners: dict[str, Runner] = {}
        self.inflight = 0
        self._load_lock = asyncio.Lock()
        self._idle = asyncio.Condition()
        self._background: set[asyncio.Task[None]] = set()
        #: called with (model name, seconds) after each load (the metrics' hook)
        self.on_load: Callable[[str, float], None] = lambda name, seconds: None
        #: each model file is proven loadable in a child process before its first load
        self.probe = LoadProbe(config.load_timeout) if config.load_probe else None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- admission ------------------------------------------------------------------------

    def admit(self) -> None:
        """Count one more inference request in flight, or refuse it (503)."""
        if self.inflight >= self.config.max_queue:
            raise ServerBusyError()
        self.inflight += 1

    def done(self) -> None:
        self.inflight -= 1

    # --- runners --------------------------------------------------------------------------

    def runner_key(self, model: ServedModel, opts: Options) -> tuple[Any, ...]:
        num_ctx = opts.num_ctx if opts.num_ctx > 0 else self.config.context_length
        return (model.adapter_paths, num_ctx, opts.num_batch, opts.use_mmap, opts.num_thread)

    async def acquire(self, model: ServedModel, opts: Options, keep_alive: float | None) -> Lease:
        """A lease on a runner for `model` with these load options, loading it if needed."""
        key = self.runner_key(model, opts)
        while True:
            runner = self.runners.get(model.model_path)
            if runner is not None and runner.key == key:
                return self._lease(runner, keep_alive)
            async with self._load_lock:
                runner = self.runners.get(model.model_path)
                if runner is not None and runner.key == key:
                    return self._lease(runner, keep_alive)
                if runner is not None:
                    await self._wait_idle(runner)
                    await self._unload(runner)
                    continue
                while len(self.runners) >= self.config.max_loaded_models:
                    await self._unload(await self._victim())
                started = time.perf_counter()
                load = asyncio.ensure_future(
                    asyncio.to_thread(self._load, model, opts, key, keep_alive)
                )
                try:
                    runner = await asyncio.shield(load)
                except asyncio.CancelledError:
                    # the client left mid-load: the load goes on, and its model is kept
                    # (idle, on its keep_alive) rather than leaked
                    load.add_done_callback(self._adopt)
                    raise
                self.runners[model.model_path] = runner
                self.on_load(model.name, time.perf_counter() - started)
                return self._lease(runner, keep_alive)

    def _adopt(self, load: asyncio.Future[Runner]) -> None:
        if load.cancelled() or load.exception() is not None:
            return
        runner = load.result()
        if runner.model.model_path in self.runners:
            self._spawn(asyncio.to_thread(runner.close))
            return
        self.runners[runner.model.model_path] = runner
        self._schedule_expiry(runner)

    def _lease(self, runner: Runner, keep_alive: float | None) -> Lease:
        runner.refcount += 1
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if keep_alive is not None:
            runner.session = keep_alive
        runner.expires_at = expiry(time.time(), runner.session)
        return Lease(runner, self)

    def _release(self, runner: Runner) -> None:
        runner.refcount -= 1
        if runner.refcount > 0:
            return
        if self.runners.get(runner.model.model_path) is not runner:
            return
        self._schedule_expiry(runner)
        self._spawn(self._notify_idle())

    def _schedule_expiry(self, runner: Runner) -> None:
        loop = asyncio.get_running_loop()
        if runner.session <= 0:
            runner.expires_at = time.time()
            self._spawn(self._expire(runner))
        elif math.isfinite(runner.session) and runner.session < MAX_SECONDS:
            runner.expires_at = expiry(time.time(), runner.session)
            runner.timer = loop.call_later(
                runner.session, lambda: self._spawn(self._expire(runner))
            )
        else:
            runner.expires_at = expiry(time.time(), FOREVER)

    async def _expire(self, runner: Runner) -> None:
        async with self._load_lock:
            if runner.refcount == 0 and self.runners.get(runner.model.model_path) is runner:
                await self._unload(runner)

    async def expire_now(self, model: ServedModel) -> None:
        """`keep_alive: 0` with an empty prompt: unload as soon as the model is idle."""
        runner = self.runners.get(model.model_path)
        if runner is None:
            return
        runner.session = 0
        if runner.refcount == 0:
            if runner.timer is not None:
                runner.timer.cancel()
            await self._expire(runner)

    async def _notify_idle(self) -> None:
        async with self._idle:
            self._idle.notify_all()

    async def _wait_idle(self, runner: Runner) -> None:
        async with self._idle:
            await self._idle.wait_for(lambda: runner.refcount == 0)

    async def _victim(self) -> Runner:
        """The runner to unload for room: idle ones first, shortest keep_alive first."""
        async with self._idle:
            await self._idle.wait_for(lambda: any(r.refcount == 0 for r in self.runners.values()))
            idle = [r for r in self.runners.values() if r.refcount == 0]
        return min(idle, key=lambda r: (r.session, r.model.model_path))

    async def _unload(self, runner: Runner) -> None:
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if self.runners.get(runner.model.model_path) is runner:
            del self.runners[runner.model.model_path]
        log.info("unloading %s", runner.model.name)
        await asyncio.to_thread(runner.close)

    def load_request(self, model: ServedModel, opts: Options, key: tuple[Any, ...]) -> LoadRequest:
        """What loading `model` for a request with `opts` depends on."""
        cfg = self.config
        return LoadRequest(
            model_path=model.model_path,
            adapter_paths=model.adapter_paths,
            use_mmap=opts.use_mmap,
            num_ctx=key[1],
            num_batch=opts.num_batch,
            num_thread=opts.num_thread,
            server_threads=cfg.num_threads or 0,
            num_parallel=cfg.num_parallel,
            flash_attention=cfg.flash_attention,
            kv_cache_type=cfg.kv_cache_type,
            embed_contexts=cfg.embed_contexts,
        )

    def _load(
        self, model: ServedModel, opts: Options, key: tuple[Any, ...], keep_alive: float | None
    ) -> Runner:
        cfg = self.config
        req = self.load_request(model, opts, key)
        if self.probe is not None:  # a file that makes llama.cpp abort must not end us
            self.probe.check(req)
        llama = LlamaModel(model.model_path, model.adapter_paths, opts.use_mmap)
        try:
            p = plan(llama, req)
            engine = Engine(llama, p.settings, model.name, itl_budget=cfg.itl_budget)
        except BaseException:
            llama.close()
            raise
        parallel = req.num_parallel
        log.info("loaded %s (num_ctx=%d, parallel=%d)", model.name, p.num_ctx, parallel)
        runner = Runner(
            model=model,
            key=key,
            llama=llama,
            engine=engine,
            num_ctx=p.num_ctx,
            num_parallel=parallel,
            threads=p.threads,
            embedding_only=p.embedding_only,
            session=cfg.keep_alive if keep_alive is None else keep_alive,
        )
        if p.embedding_only:
            contexts, per_context = embed_layout(p.threads, cfg.embed_contexts)
            runner.embedder = Embedder(
                llama,
                p.num_ctx,
                per_context,
                max_jobs=parallel,
                contexts=contexts,
                lone_threads=p.threads,
            )
            runner.embedder.start()
        else:  # passes on the engine thread, between decode steps
            runner.embedder = Embedder(llama, p.num_ctx, p.threads, max_jobs=parallel)
        return runner

    async def shutdown(self) -> None:
        if self.probe is not None:
            self.probe.stop()  # a probe running now fails its load at once
        async with self._load_lock:
            for runner in list(self.runners.values()):
                await self._unload(runner)

    def running(self) -> list[Runner]:
        """Loaded runners, latest expiry first (the /api/ps order)."""
        return sorted(self.runners.values(), key=lambda r: r.expires_at, reverse=True)
