"""The decode loop: continuous batching of parallel generations over one llama.cpp context.

One `Engine` per loaded model owns a context with `n_parallel` sequences (slots) and a
thread that, step after step, puts every active slot's next token plus pending prompt
into one batch (a chunk of it while other slots decode: runtime/batching.py), decodes
it, and samples each slot's next token. New
requests take a free slot (the one whose cached tokens share the longest prefix with the
new prompt, so a follow-up chat turn only decodes what is new); requests beyond the slots
wait. A cancelled request leaves its slot at the next step. Events go back through each
request's `on_event`, called on the engine thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import llama_cpp as lc

from runtime.admission import ItlBudget
from runtime.batching import PREFILL_CHUNK, Slot, StepBatch, common_prefix
from runtime.engine_events import Event, Failed, Finished, Generation, Token
from runtime.llama import ContextSettings, LlamaModel
from runtime.logprobs import PendingLogprobs, TokenLogprob, token_logprob
from runtime.sampling import Sampler
from runtime.textstream import TextStream
from runtime.vision import MediaPrompt, Projector

__all__ = ["Engine", "Event", "Failed", "Finished", "Generation", "Token"]

log = logging.getLogger("mfc.serve")


class Engine:
    """A context with `n_parallel` slots and the thread that decodes for them."""

    def __init__(
        self,
        model: LlamaModel,
        settings: ContextSettings | None,
        name: str = "",
        prefill_chunk: int = PREFILL_CHUNK,
        itl_budget: float = 0.0,
    ) -> None:
        """`settings` None: no generation context (an embedding-only model runs tasks only);
        `prefill_chunk`: prompt tokens per step while other slots decode; `itl_budget` > 0:
        streams decode together only while a step costs at most that many single-stream
        steps (runtime/admission.py), 0 admits a request whenever a slot is free."""
        self.model = model
        self.settings = settings
        self.prefill_chunk = prefill_chunk
        self.ctx: Any = None
        self.batch: StepBatch | None = None
        self.slots: list[Slot] = []
        self.n_ctx_seq = 0
        if settings is not None:
            self.ctx = model.new_context(settings)
            self.mem = lc.llama_get_memory(self.ctx)
            self.n_ctx_seq = int(lc.llama_n_ctx_seq(self.ctx))
            self.n_batch = int(lc.llama_n_batch(self.ctx))
            self.can_shift = bool(lc.llama_memory_can_shift(self.mem))
            self.batch = StepBatch(self.n_batch)
            self.slots = [Slot(seq) for seq in range(settings.n_seq_max)]
        self.budget: ItlBudget | None = None
        if itl_budget > 0 and len(self.slots) > 1:
            self.budget = ItlBudget(itl_budget, len(self.slots))
        self._projectors: dict[str, Projector] = {}  # loaded on first use, engine thread only
        self._waiting: collections.deque[Generation] = collections.deque()
        self._tasks: list[Callable[[], None]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._prompt_threads = True
        self._thread = threading.Thread(target=self._run, name=f"engine {name}", daemon=True)
        self._thread.start()

    # --- called from other threads -----------------------------------------------------

    def submit(self, job: Generation) -> None:
        if self.ctx is None:
            job.on_event(Failed(400, "this model does not support generation"))
            return
        with self._cond:
            self._waiting.append(job)
            self._cond.notify()

    def call(self, task: Callable[[], None]) -> None:
        """Run `task` on the engine thread between two decode steps."""
        with self._cond:
            self._tasks.append(task)
            self._cond.notify()

    def wake(self) -> None:
        """Look at cancellations now rather than at the next step."""
        with self._cond:
            self._cond.notify()

    @property
    def waiting(self) -> int:
        """Generations submitted and waiting for a free slot."""
        return len(self._waiting)

    def kv_cache_tokens(self) -> tuple[int, int]:
        """(tokens held in the KV cache, tokens it can hold) over all slots."""
        used = sum(len(s.cached) + s.extra for s in self.slots)
        return used, self.n_ctx_seq * len(self.slots)

    @property
    def busy(self) -> int:
        return sum(1 for s in self.slots if s.job is not None) + len(self._waiting)

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        for slot in self.slots:
            if slot.job is not None:
                slot.job.on_event(Failed(500, "model unloaded"))
            self._release(slot)
        for job in self._waiting:
            job.on_event(Failed(500, "model unloaded"))
        self._waiting.clear()
        for projector in self._projectors.values():
            projector.close()
        self._projectors.clear()
        if self.batch is not None:
            self.batch.close()
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None

    # --- the engine thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._tasks and not self._has_work():
                    self._cond.wait()
                if self._stopping:
                    return
                tasks, self._tasks = self._tasks, []
                dropped = self._drop_cancelled()
                admitted = self._admit()
            for job in dropped:
                job.on_event(Failed(499, "request canceled"))
            for task in tasks:
                task()
            for slot in admitted:
                self._start(slot)
            self._reap_cancelled()
            if any(s.job is not None for s in self.slots):
                try:
                    self._step()
                except Exception as exc:  # never let the engine thread die with jobs waiting
                    log.exception("decode step failed")
                    for slot in self.slots:
                        if slot.job is not None:
                            slot.job.on_event(Failed(500, f"generation failed: {exc}"))
                            self._forget(slot)

    def _has_work(self) -> bool:
        return bool(self._waiting) or any(s.job is not None for s in self.slots)

    def _drop_cancelled(self) -> list[Generation]:
        """Cancelled jobs leave the queue wherever they are in it."""
        dropped = [job for job in self._waiting if job.cancelled]
        if dropped:
            self._waiting = collections.deque(j for j in self._waiting if not j.cancelled)
        return dropped

    def _admit(self) -> list[Slot]:
        """Waiting jobs, oldest first, into free slots while the budget allows more streams."""
        admitted: list[Slot] = []
        if not self._waiting:
            return admitted
        active = sum(1 for s in self.slots if s.job is not None)
        limit = self.budget.streams() if self.budget is not None else len(self.slots)
        while self._waiting and active < limit:
            job = self._waiting[0]
            free = [s for s in self.slots if s.job is None]
            if not free:
                break
            active += 1
            self._waiting.popleft()
            slot = max(free, key=lambda s: (common_prefix(s.cached, job.prompt), -s.last_used))
            slot.job = job
            admitted.append(slot)
        return admitted

    def _start(self, slot: Slot) -> None:
        job = slot.job
        assert job is not None
        if job.media is not None:
            self._start_media(slot, job.media)
            return
        prompt = job.prompt
        limit = self.n_ctx_seq - 1
        if len(prompt) > limit:
            if not job.truncate:
                job.on_event(Failed(400, "input length exceeds the context length"))
                slot.job = None
                return
            keep = min(max(job.num_keep, 0), limit // 2)
            prompt = prompt[:keep] + prompt[len(prompt) - (limit - keep) :]
        if not prompt:
            prompt = [self.model.bos if self.model.bos >= 0 else 0]
        reuse = common_prefix(slot.cached, prompt)
        if reuse == len(prompt):
            reuse -= 1  # the last prompt token is decoded again for its logits
        if reuse < len(slot.cached) and not lc.llama_memory_seq_rm(self.mem, slot.seq, reuse, -1):
            lc.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            reuse = 0
        slot.cached = prompt[:reuse]
        slot.extra = 0  # an image's cells sit past `reuse` (its key never matches): removed
        slot.pending = prompt[reuse:]
        slot.reused = reuse
        self._prepare(slot, prompt)

    def _prepare(self, slot: Slot, prompt: list[int]) -> bool:
        """Fresh per-request state for `slot`; False (the job failed) without a sampler."""
        job = slot.job
        assert job is not None
        slot.generated = []
        slot.sampled = 0
        slot.next_token = None
        slot.text = TextStream(job.stop)
        slot.logprobs = PendingLogprobs()
        slot.t_start = time.perf_counter()
        slot.t_first = 0.0
        try:
            slot.sampler = Sampler(job.sampling, self.model.vocab, self.n_ctx_seq)
        except Exception as exc:
            job.on_event(Failed(getattr(exc, "status", 500), str(exc)))
            slot.job = None
            return False
        text = [t for t in prompt if t >= 0]  # image positions are not vocabulary tokens
        last_n = job.sampling.repeat_last_n
        slot.sampler.remember_prompt(text[-last_n:] if last_n > 0 else text)
        job.prompt = prompt
        return True

    def _start_media(self, slot: Slot, media: MediaPrompt) -> None:
        """Evaluate a prompt with images in the slot's own sequence, from its start (an
        image's KV is never shared), then sample its first token."""
        job = slot.job
        assert job is not None
        try:
            projector = self._projectors.get(media.projector)
            if projector is None:
                assert self.settings is not None
                threads = self.settings.n_threads_batch
                projector = Projector(media.projector, self.model.ptr, threads)
                self._projectors[media.projector] = projector
            chunks = projector.tokenize(media)
        except Exception as exc:
            job.on_event(Failed(getattr(exc, "status", 500), getattr(exc, "message", str(exc))))
            slot.job = None
            return
        try:
            if chunks.n_tokens > self.n_ctx_seq - 1:
                job.on_event(Failed(400, "input length exceeds the context length"))
                slot.job = None
                return
            lc.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            slot.cached, slot.pending, slot.reused, slot.extra = [], [], 0, 0
            job.shift = False  # as llama.cpp's server: no context shift through an image
            if not self._prepare(slot, chunks.key):
                return
            self._use_threads(prompt=True)
            n_past = projector.evaluate(self.ctx, chunks, slot.seq, self.n_batch)
        except Exception as exc:
            log.exception("image prompt failed")
            job.on_event(Failed(500, f"generation failed: {exc}"))
            self._forget(slot)
            return
        finally:
            chunks.close()
        slot.cached = list(chunks.key[:n_past])
        # libmtmd gives M-RoPE images their own positions; the text after them goes on
        # from n_past, one position a token, as llama.cpp's server does
        slot.extra = chunks.n_tokens - chunks.n_pos
        slot.t_first = time.perf_counter()
        assert slot.sampler is not None
        self._accept(slot, slot.sampler.sample(self.ctx, -1), -1)

    def _reap_cancelled(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                slot.job.on_event(Failed(499, "request canceled"))
                self._release(slot)

    def _step(self) -> None:
        assert self.batch is not None
        started = time.thread_time()
        decoding = sum(1 for s in self.slots if s.job is not None and s.next_token is not None)
        chunk = self.prefill_chunk
        if self.budget is not None and decoding:
            chunk = self.budget.prompt_room(decoding, chunk)
        outputs = self.batch.fill(self.slots, chunk, always_chunk=self.budget is not None)
        self._use_threads(prompt=len(outputs) < self.batch.n)
        rc = lc.llama_decode(self.ctx, self.batch.ptr)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        now = time.perf_counter()
        for slot, index in outputs:
            if slot.job is None or slot.job.cancelled:
                continue
            if not slot.t_first:
                slot.t_first = now
            assert slot.sampler is not None
            self._accept(slot, slot.sampler.sample(self.ctx, index), index)
        if self.budget is not None:  # what streams wait for: decode, sampling, events
            self.budget.record(self.batch.n, time.thread_time() - started)

    def _use_threads(self, prompt: bool) -> None:
        """Generation threads for steps that only decode (one token per slot, however many
        slots), prompt threads when prompt tokens are in the batch. llama.cpp itself would
        use the prompt threads for any batch of more than one token, and a multi-stream
        decode step is no more compute-bound than a single-stream one."""
        if prompt == self._prompt_threads:
            return
        assert self.settings is not None
        batch_threads = self.settings.n_threads_batch if prompt else self.settings.n_threads
        lc.llama_set_n_threads(self.ctx, self.settings.n_threads, batch_threads)
        self._prompt_threads = prompt

    def _accept(self, slot: Slot, token: int, index: int) -> None:
        job = slot.job
        assert job is not None
        slot.sampled += 1
        if self.model.is_eog(token):
            self._finish(slot, "stop")
            return
        slot.generated.append(token)
        start = slot.text.decoded
        text = slot.text.feed(self.model.piece(token))
        logprobs: tuple[TokenLogprob, ...] = ()
        if job.logprobs:  # the logits at `index` stay valid until the next decode
            entry = token_logprob(self.ctx, index, token, self.model, job.top_logprobs)
            slot.logprobs.add(start, slot.text.decoded, entry)
            logprobs = slot.logprobs.release(len(text))
        if text or logprobs:
            job.on_event(Token(text, logprobs))
        if slot.text.stopped:
            self._finish(slot, "stop")
            return
        if 0 <= job.num_predict <= len(slot.generated):
            self._finish(slot, "length")
            return
        if len(slot.cached) + slot.extra >= self.n_ctx_seq and not self._shift(slot):
            self._finish(slot, "length")
            return
        slot.next_token = token

    def _shift(self, slot: Slot) -> bool:
        """Make room by dropping half of what follows the first `num_keep` tokens."""
        job = slot.job
        assert job is not None
        if not job.shift or not self.can_shift:
            return False
        n_past = len(slot.cached)
        keep = min(max(job.num_keep, 0), n_past // 2)
        discard = (n_past - keep) // 2
        if discard <= 0:
            return False
        lc.llama_memory_seq_rm(self.mem, slot.seq, keep, keep + discard)
        lc.llama_memory_seq_add(self.mem, slot.seq, keep + discard, n_past, -discard)
        del slot.cached[keep : keep + discard]
        return True

    def _finish(self, slot: Slot, reason: str) -> None:
        job = slot.job
        assert job is not None
        rest = slot.text.flush()
        if slot.text.stopped:
            slot.logprobs.drop()
        logprobs = slot.logprobs.rest()
        if rest or logprobs:
            job.on_event(Token(rest, logprobs))
        now = time.perf_counter()
        first = slot.t_first or now
        job.on_event(
            Finished(
                reason=reason,
                prompt_tokens=len(job.prompt),
                prompt_ns=max(int((first - slot.t_start) * 1e9), 1),
                eval_tokens=slot.sampled,
                eval_ns=max(int((now - first) * 1e9), 1),
                context=[t for t in job.prompt if t >= 0] + slot.generated,
                cached_tokens=slot.reused,
            )
        )
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        if slot.sampler is not None:
            slot.sampler.close()
            slot.sampler = None
        slot.job = None
        slot.next_token = None
        slot.pending = []
        slot.last_used = time.monotonic()

    def _forget(self, slot: Slot) -> None:
        """Drop a slot's cache after a failed step (its KV may be inconsistent)."""
        self._release(slot)
        lc.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        slot.cached = []
        slot.extra = 0
