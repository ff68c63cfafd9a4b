"""What loading a model asks of llama.cpp: its context settings, from the request's load
options, the server's configuration and the model's own facts.

The scheduler loads by this plan, and the load probe (runtime/load_probe.py) proves the
same plan in a throwaway process first, so both build the same contexts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from runtime.cpu import default_threads
from runtime.llama import ContextSettings, LlamaModel

log = logging.getLogger("mfc.serve")


def usable_threads(requested: int) -> int:
    """`num_thread` as used: at most one per CPU (more only contend: 600 ran 15x slower);
    0 or less means the default."""
    return min(requested, os.cpu_count() or 1) if requested > 0 else 0


def embed_layout(threads: int, contexts: int | None) -> tuple[int, int]:
    """(contexts, threads per context) for an embedding model given `threads` in all.

    By default one single-threaded context per thread: independent passes in parallel
    scale with the cores, while one pass split over threads waits at every op's barrier
    (all-MiniLM-L6-v2 F16, 128 texts: 2 threads in one context ran 1.69x one thread, two
    one-thread contexts 1.95-2x). A pass running alone takes every thread all the same.
    `MFC_EMBED_CONTEXTS` asks for fewer, wider contexts (lower latency for one long input
    on a many-core machine, but while they compute beside a chat model's engine, that
    model's barriers sleep: runtime/openmp.py)."""
    n = min(contexts or threads, threads) if threads > 0 else 1
    return max(n, 1), max(threads // max(n, 1), 1)


def usable_batch(requested: int, n_ctx: int) -> int:
    """`num_batch` as used: 1..n_ctx (llama.cpp's n_batch is 32-bit: 2^40 would wrap to 0,
    and it never batches more than the context holds)."""
    return min(max(requested, 1), n_ctx)


def kv_type(flash_attention: bool | None, requested: str) -> str:
    """The KV cache type used: a quantized V cache needs flash attention; the reference
    falls back to f16 without it."""
    if requested != "f16" and flash_attention is False:
        log.warning("OLLAMA_KV_CACHE_TYPE=%s needs flash attention; using f16", requested)
        return "f16"
    return requested


@dataclass(frozen=True)
class LoadRequest:
    """Everything a load depends on, as plain values (the probe gets it as JSON)."""

    model_path: str
    adapter_paths: tuple[str, ...]
    use_mmap: bool | None
    num_ctx: int  # requested, before the model's trained length caps it
    num_batch: int
    num_thread: int  # the request's option (0: the server's)
    server_threads: int  # MFC_NUM_THREADS (0: the default)
    num_parallel: int
    flash_attention: bool | None
    kv_cache_type: str
    embed_contexts: int | None


@dataclass(frozen=True)
class LoadPlan:
    """The runner a request's load makes, decided once the model's header is known."""

    num_ctx: int
    threads: int
    embedding_only: bool
    settings: ContextSettings | None  # the generation context (None: embedding-only)


def plan(llama: LlamaModel, req: LoadRequest) -> LoadPlan:
    """The runner for `req` over the loaded `llama`."""
    num_ctx = max(min(req.num_ctx, llama.n_ctx_train or req.num_ctx), 4)
    threads = usable_threads(req.num_thread or req.server_threads) or default_threads()
    embedding_only = llama.pooling_type is not None or not llama.has_decoder
    parallel = req.num_parallel
    settings = None
    if not embedding_only:
        settings = ContextSettings(
            n_ctx=num_ctx * parallel,
            n_seq_max=parallel,
            n_batch=usable_batch(req.num_batch, num_ctx * parallel),
            n_ubatch=usable_batch(req.num_batch, num_ctx * parallel),
            n_threads=threads,
            n_threads_batch=threads,
            flash_attention=req.flash_attention,
            kv_cache_type=kv_type(req.flash_attention, req.kv_cache_type),
        )
    return LoadPlan(num_ctx, threads, embedding_only, settings)
