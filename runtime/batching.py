"""What one decode step carries: every decoding slot's next token, then prompt chunks.

A slot is one sequence of the engine's context: the tokens whose KV it holds and the
state of the request it serves. `StepBatch.fill` lays out one `llama_decode` batch from
the slots. While slots are decoding, the prompt tokens of a step are capped at the
engine's prefill chunk (chunked prefill): a newly admitted prompt is evaluated over several
steps, each of which still advances the running streams by one token, instead of one long
step that stalls them all for the whole prompt. With nothing decoding, or when the prompts
waiting for their first token outnumber the streams decoding (a burst of requests arriving
together), prompts go in batches of `n_batch`: the few running streams then pause once
instead of crawling through many slow steps (which raises their p99 inter-token latency:
measured below), and the burst's first tokens come no later. Under an inter-token latency
budget (runtime/admission.py) every prompt beside decoding streams is chunked, bursts too,
in chunks the budget sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llama_cpp as lc

from runtime.logprobs import PendingLogprobs
from runtime.sampling import Sampler
from runtime.textstream import TextStream

if TYPE_CHECKING:
    from runtime.engine_events import Generation

#: prompt tokens per step while slots decode. A prompt token costs llama.cpp about what a
#: decoding slot's token costs: SmolLM2-135M Q4_1, one thread, engine-thread CPU time per
#: step is ~13 ms for one decode token and ~7.7 ms for each further token (8 decode tokens:
#: ~67 ms), so a chunk of c adds ~7.7c ms to the running streams' steps, and a prompt
#: split beside d decoding streams costs (13 + 7.7d) / 7.7c more than in one batch.
#: Measured with 7 streams decoding and a 417-token prompt arriving (CPU ms between a
#: stream's tokens, p50/p99/max): unchunked 82/3314/3314, 128: 66/1215/1215,
#: 64: 70/690/702, 32: 67/421/537, 16: 84/241/241. 32 keeps a stream's slowest step
#: within ~8 decode steps (a 2,000-token prompt unchunked stalls every stream for ~15 s
#: of one core) for ~27% on the new prompt's first token beside 7 streams (16: ~54%).
#: One stream decoding and 7 prompts of ~30 tokens arriving together (a burst, as
#: bench/serve.py starts its streams), p99/max: 87/2000 unchunked, 298/306 at 32, 501/597
#: at 64 when the burst was chunked too; with the rule above it is not chunked.
PREFILL_CHUNK = 32


@dataclass
class Slot:
    """One sequence of the context and the request it is serving."""

    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in the cache
    #: KV cells beyond `cached`'s positions: an M-RoPE image (Qwen2-VL) takes one cell per
    #: embedding but fewer positions (its rows and columns share them)
    extra: int = 0
    job: Generation | None = None
    sampler: Sampler | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not decoded yet
    next_token: int | None = None
    generated: list[int] = field(default_factory=list)
    sampled: int = 0
    reused: int = 0
    text: TextStream = field(default_factory=TextStream)
    logprobs: PendingLogprobs = field(default_factory=PendingLogprobs)
    t_start: float = 0.0
    t_first: float = 0.0
    last_used: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class StepBatch:
    """A `llama_batch` of `capacity` tokens, refilled for every step."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.ptr: Any = lc.llama_batch_init(capacity, 0, 1)
        self.n = 0

    def close(self) -> None:
        if self.ptr is not None:
            lc.llama_batch_free(self.ptr)
            self.ptr = None

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        batch, n = self.ptr, self.n
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq
        batch.logits[n] = logits
        self.n = n + 1

    def fill(
        self, slots: list[Slot], prefill_chunk: int, always_chunk: bool = False
    ) -> list[tuple[Slot, int]]:
        """Lay out the next step; the (slot, batch index) pairs whose logits get sampled:
        every decoding slot, and each slot whose prompt ends in this step. `always_chunk`:
        a burst of prompts is chunked too (an inter-token latency budget holds)."""
        self.n = 0
        outputs: list[tuple[Slot, int]] = []
        for slot in slots:
            if slot.job is not None and slot.next_token is not None:
                self._add(slot.next_token, len(slot.cached), slot.seq, True)
                slot.cached.append(slot.next_token)
                slot.next_token = None
                outputs.append((slot, self.n - 1))
        room = self.capacity - self.n
        prefilling = sum(1 for s in slots if s.job is not None and s.pending)
        if outputs and (always_chunk or len(outputs) >= prefilling):
            room = min(room, max(prefill_chunk, 1))
        for slot in slots:
            if slot.job is None or not slot.pending or room <= 0:
                continue
            take = min(len(slot.pending), room)
            start = len(slot.cached)
            last = take == len(slot.pending)
            for j in range(take):
                self._add(slot.pending[j], start + j, slot.seq, last and j == take - 1)
            slot.cached.extend(slot.pending[:take])
            del slot.pending[:take]
            room -= take
            if last:
                outputs.append((slot, self.n - 1))
        self.ptr.n_tokens = self.n
        return outputs
