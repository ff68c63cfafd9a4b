"""Prometheus metrics of one server (`GET /metrics`), on a registry of its own.

Names follow Prometheus' conventions (base units, `_total` counters) with an `mfc_` prefix;
where llama-server's `/metrics` has the same quantity the rest of the name is its name
(`llamacpp:prompt_tokens_total` is `mfc_prompt_tokens_total` here: a colon is legal but
reserved for recording rules). Counters and histograms are updated by the request path
through the `RequestRecord` of the request being served (a context variable, so the
scheduler and generation code need no request argument); gauges of loaded models and
queues are read from the scheduler at scrape time.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.scheduler import Scheduler
from toolchain import __version__

# `_created` series double every counter for little use (and llama-server has none).
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OPERATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The server's metric families, registered on `self.registry`."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mfc_http_requests", "HTTP requests answered, by route, model and status.",
            ["method", "route", "model", "status"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "mfc_http_request_duration_seconds",
            "Time from request to the last byte of the response (streams included).",
            ["route", "model"], buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "mfc_time_to_first_token_seconds",
            "Time from request to the first generated token.",
            ["model"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "mfc_inter_token_latency_seconds",
            "Time between two consecutive generated tokens of one request.",
            ["model"], buckets=ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "mfc_prompt_tokens", "Prompt tokens processed (llamacpp:prompt_tokens_total).",
            ["model"], registry=r,
        )  # fmt: skip
        self.prompt_seconds = Counter(
            "mfc_prompt_seconds", "Prompt processing time (llamacpp:prompt_seconds_total).",
            ["model"], registry=r,
        )  # fmt: skip
        self.predicted_tokens = Counter(
            "mfc_tokens_predicted", "Tokens generated (llamacpp:tokens_predicted_total).",
            ["model"], registry=r,
        )  # fmt: skip
        self.predicted_seconds = Counter(
            "mfc_tokens_predicted_seconds",
            "Generation time (llamacpp:tokens_predicted_seconds_total).",
            ["model"], registry=r,
        )  # fmt: skip
        self.embed_inputs = Counter(
            "mfc_embedding_inputs", "Texts embedded.", ["model"], registry=r
        )
        self.embed_tokens = Counter(
            "mfc_embedding_tokens", "Tokens of the texts embedded.", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "mfc_model_load_duration_seconds", "Time to load a model into memory.",
            ["model"], buckets=LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.operations = Counter(
            "mfc_model_operations",
            "Store operations from /api/create and /api/pull, /api/push, by result.",
            ["operation", "result"], registry=r,
        )  # fmt: skip
        self.operation_seconds = Histogram(
            "mfc_model_operation_duration_seconds",
            "Duration of /api/create, /api/pull and /api/push operations.",
            ["operation"], buckets=OPERATION_BUCKETS, registry=r,
        )  # fmt: skip
        info = Gauge("mfc_build_info", "The mfc version serving.", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        self.waiting: Tally[str] = Tally()  # requests waiting for their model, by model
        self.holding: Tally[str] = Tally()  # requests holding a loaded model, by model
        self.state = ServerState(scheduler.config.max_queue)
        r.register(SchedulerCollector(scheduler, self))
        scheduler.on_load = self.model_loaded

    def model_loaded(self, model: str, seconds: float) -> None:
        self.load_seconds.labels(model=model).observe(seconds)


@dataclass
class ServerState:
    """Readiness inputs: preloading, draining, the queue limit."""

    max_queue: int
    preloading: bool = False
    preload_error: str = ""
    draining: bool = False


class SchedulerCollector(Collector):
    """Gauges read from the scheduler at scrape time: loaded models, queues, KV cache."""

    def __init__(self, scheduler: Scheduler, metrics: Metrics) -> None:
        self.scheduler = scheduler
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        sched = self.scheduler
        loaded = GaugeMetricFamily("mfc_models_loaded", "Models loaded in memory.")
        memory = GaugeMetricFamily(
            "mfc_model_memory_bytes", "Size of a loaded model's weights.", labels=["model"]
        )
        kv_tokens = GaugeMetricFamily(
            "mfc_kv_cache_tokens", "Tokens held in a model's KV cache (llamacpp:kv_cache_tokens).",
            labels=["model"],
        )  # fmt: skip
        kv_capacity = GaugeMetricFamily(
            "mfc_kv_cache_capacity_tokens", "Tokens a model's KV cache can hold.", labels=["model"]
        )
        kv_ratio = GaugeMetricFamily(
            "mfc_kv_cache_usage_ratio",
            "KV cache use, 0 to 1 (llamacpp:kv_cache_usage_ratio).", labels=["model"],
        )  # fmt: skip
        processing = GaugeMetricFamily(
            "mfc_requests_processing",
            "Requests being decoded, by model (llamacpp:requests_processing).", labels=["model"],
        )  # fmt: skip
        deferred = GaugeMetricFamily(
            "mfc_requests_deferred",
            "Requests queued for a model or a free slot (llamacpp:requests_deferred).",
            labels=["model"],
        )  # fmt: skip
        runners = list(sched.runners.values())
        loaded.add_metric([], len(runners))
        in_engine: Tally[str] = Tally()
        for runner in runners:
            name = runner.model.name
            memory.add_metric([name], runner.llama.size)
            used, capacity = runner.engine.kv_cache_tokens()
            kv_tokens.add_metric([name], used)
            kv_capacity.add_metric([name], capacity)
            kv_ratio.add_metric([name], used / capacity if capacity else 0.0)
            in_engine[name] += runner.engine.waiting
        names = set(self.metrics.waiting) | set(self.metrics.holding)
        names |= {runner.model.name for runner in runners}
        for name in sorted(names):
            queued = min(in_engine[name], self.metrics.holding[name])
            processing.add_metric([name], self.metrics.holding[name] - queued)
            deferred.add_metric([name], self.metrics.waiting[name] + queued)
        inflight = GaugeMetricFamily(
            "mfc_requests_inflight", "Inference requests admitted, waiting or running."
        )
        inflight.add_metric([], sched.inflight)
        capacity_total = GaugeMetricFamily(
            "mfc_requests_max", "Inference requests admitted at most (OLLAMA_MAX_QUEUE)."
        )
        capacity_total.add_metric([], sched.config.max_queue)
        state = self.metrics.state
        ready = GaugeMetricFamily("mfc_ready", "1 when /ready answers 200.")
        ready.add_metric([], 1 if readiness(state, sched.inflight) == "ready" else 0)
        draining = GaugeMetricFamily("mfc_draining", "1 once a shutdown has begun.")
        draining.add_metric([], 1 if state.draining else 0)
        yield from (loaded, memory, kv_tokens, kv_capacity, kv_ratio, processing, deferred)
        yield from (inflight, capacity_total, ready, draining)
        if sched.probe is not None:
            probes = CounterMetricFamily(
                "mfc_model_load_probes",
                "Model files tried in a child process before their first load, by result.",
                labels=["result"],
            )
            for result, count in sorted(sched.probe.results.items()):
                probes.add_metric([result], count)
            yield probes

    def describe(self) -> Iterable[Metric]:
        return []


def readiness(state: ServerState, inflight: int) -> str:
    """`ready`, or why not: `loading`, `preload failed`, `draining`, `busy`."""
    if state.draining:
        return "draining"
    if state.preload_error:
        return "preload failed"
    if state.preloading:
        return "loading"
    if inflight >= state.max_queue:
        return "busy"
    return "ready"


@dataclass(eq=False)
class RequestRecord:
    """What one request did, for its metrics and its access-log line."""

    metrics: Metrics | None
    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    model: str = ""
    prompt_tokens: int = 0
    eval_tokens: int = 0
    first_token: float = 0.0
    last_token: float = 0.0
    #: called when the drain deadline cuts the request's generation
    cutters: list[Callable[[], None]] = field(default_factory=list)
    cut: bool = False  # the deadline has passed: a generation starting now ends at once

    @contextmanager
    def waiting(self, model: str) -> Iterator[None]:
        """The block where this request waits for `model` to be loaded for it."""
        self.model = model
        yield from _counted(self.metrics.waiting if self.metrics else None, model)

    @contextmanager
    def holding(self, model: str) -> Iterator[None]:
        """The block where this request holds the loaded `model`."""
        yield from _counted(self.metrics.holding if self.metrics else None, model)

    def token(self) -> None:
        """A generated token reached the request."""
        now = time.perf_counter()
        if self.metrics is not None:
            if not self.first_token:
                self.metrics.ttft.labels(model=self.model).observe(now - self.started)
            else:
                self.metrics.itl.labels(model=self.model).observe(now - self.last_token)
        self.first_token = self.first_token or now
        self.last_token = now

    def generated(self, prompt_tokens: int, prompt_ns: int, eval_tokens: int, eval_ns: int) -> None:
        """A generation finished with these counts and times."""
        self.prompt_tokens += prompt_tokens
        self.eval_tokens += eval_tokens
        if self.metrics is not None:
            m, model = self.metrics, self.model
            m.prompt_tokens.labels(model=model).inc(prompt_tokens)
            m.prompt_seconds.labels(model=model).inc(prompt_ns / 1e9)
            m.predicted_tokens.labels(model=model).inc(eval_tokens)
            m.predicted_seconds.labels(model=model).inc(eval_ns / 1e9)

    def embedded(self, inputs: int, tokens: int) -> None:
        self.prompt_tokens += tokens
        if self.metrics is not None:
            self.metrics.embed_inputs.labels(model=self.model).inc(inputs)
            self.metrics.embed_tokens.labels(model=self.model).inc(tokens)

    def on_cut(self, cut: Callable[[], None]) -> Callable[[], None]:
        """Register `cut` for the drain deadline; returns the function that unregisters it."""
        if self.cut:
            cut()
        self.cutters.append(cut)
        return lambda: self.cutters.remove(cut) if cut in self.cutters else None

    def cut_now(self) -> int:
        """The drain deadline passed: end this request's generation (now or when it starts)."""
        self.cut = True
        for cut in list(self.cutters):
            cut()
        return len(self.cutters)


def _counted(tally: Tally[str] | None, key: str) -> Iterator[None]:
    if tally is None:
        yield
        return
    tally[key] += 1
    try:
        yield
    finally:
        tally[key] -= 1
        if tally[key] <= 0:
            del tally[key]


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "mfc_request", default=None
)


def current_request() -> RequestRecord:
    """The record of the request being served (a detached one outside any request)."""
    record = _current.get()
    return record if record is not None else RequestRecord(None)


def set_current_request(record: RequestRecord) -> contextvars.Token[RequestRecord | None]:
    return _current.set(record)


def reset_current_request(token: contextvars.Token[RequestRecord | None]) -> None:
    _current.reset(token)


async def tracked_operation(
    items: AsyncIterator[dict[str, Any]], operation: str
) -> AsyncIterator[dict[str, Any]]:
    """Pass progress events through, counting the operation's result and duration."""
    metrics = current_request().metrics
    started = time.perf_counter()
    result = "error"
    try:
        async for item in items:
            if item.get("status") == "success":
                result = "success"
            yield item
    finally:
        if metrics is not None:
            metrics.operations.labels(operation=operation, result=result).inc()
            elapsed = time.perf_counter() - started
            metrics.operation_seconds.labels(operation=operation).observe(elapsed)
