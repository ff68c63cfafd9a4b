"""Chunked prefill: a prompt admitted while another stream decodes is evaluated a chunk per
step, the running stream advancing a token at every one of those steps, and both answers
stay token for token what llama-cpp-python generates alone (greedy, flash attention on
both sides). A request cancelled mid-prompt leaves the chunks already evaluated in its
slot's cache for the next request with that prompt."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

import pytest

from runtime.batching import Slot
from runtime.engine import Engine, Event, Failed, Finished, Generation, Token
from runtime.llama import ContextSettings, LlamaModel
from runtime.sampling import SamplingSpec
from tests.runtime.llama_reference import Reference

pytestmark = [pytest.mark.oracle, pytest.mark.slow]

CHUNK = 8
RUNNING = (
    "<|im_start|>user\nWrite a long story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"
)
ADMITTED = (
    "<|im_start|>system\nYou are a careful assistant who answers in full sentences and "
    "explains every step of the reasoning that leads to the answer.<|im_end|>\n"
    "<|im_start|>user\nWhat are the three primary colours of light, and why do screens use "
    "them rather than the colours a painter mixes?<|im_end|>\n<|im_start|>assistant\n"
)
GREEDY = SamplingSpec(temperature=0)


@pytest.fixture(scope="module")
def model(smollm2_model: LlamaModel) -> LlamaModel:
    return smollm2_model


@pytest.fixture(scope="module")
def engine(model: LlamaModel) -> Iterator[Engine]:
    settings = ContextSettings(
        n_ctx=2 * 512, n_seq_max=2, n_threads=1, n_threads_batch=1, flash_attention=True
    )
    e = Engine(model, settings, prefill_chunk=CHUNK)
    yield e
    e.close()


@pytest.fixture(scope="module")
def reference(smollm2_reference: Reference) -> Reference:
    return smollm2_reference


class Run:
    """A generation, its events, and an optional hook called on the engine thread with
    the number of tokens it has released so far."""

    def __init__(self, tokens: list[int], n: int, hook: Callable[[int], None] | None = None):
        self.tokens: list[str] = []
        self.end: Finished | Failed | None = None
        self.done = threading.Event()
        self.hook = hook
        self.job = Generation(tokens, GREEDY, self.on, num_predict=n)

    def on(self, event: Event) -> None:
        if isinstance(event, Token):
            self.tokens.append(event.text)
            if self.hook is not None:
                self.hook(len(self.tokens))
        else:
            self.end = event
            self.done.set()

    def finished(self) -> Finished:
        assert self.done.wait(600)
        assert isinstance(self.end, Finished), self.end
        return self.end


def generated(end: Finished, prompt: list[int]) -> list[int]:
    return end.context[len(prompt) :]


def expected(reference: Reference, prompt: list[int], n: int) -> list[int]:
    return [step.token for step in reference.greedy(prompt, n)]


def test_admitted_prompt_is_chunked_between_decode_steps(
    engine: Engine, model: LlamaModel, reference: Reference
) -> None:
    running, admitted = model.tokenize(RUNNING), model.tokenize(ADMITTED)
    chunks = math.ceil(len(admitted) / CHUNK)
    assert chunks >= 6
    seen: dict[str, int] = {}

    def first_token(k: int) -> None:
        seen.setdefault("first", len(first.tokens))

    second = Run(admitted, 12, hook=first_token)

    def submit_second(k: int) -> None:
        if k == 2:  # on the engine thread: admitted at the very next step
            seen["submitted"] = k
            engine.submit(second.job)

    first = Run(running, chunks + 30, hook=submit_second)
    engine.submit(first.job)
    end_first, end_second = first.finished(), second.finished()
    # the running stream got a token at each step that carried a chunk of the new prompt
    # (one step with the whole prompt would give it one)
    assert seen["first"] - seen["submitted"] == chunks
    assert generated(end_first, running) == expected(reference, running, chunks + 30)
    assert generated(end_second, admitted) == expected(reference, admitted, 12)
    assert end_second.prompt_tokens == len(admitted) and end_second.cached_tokens == 0


def test_cancel_mid_prefill_keeps_the_evaluated_chunks(
    engine: Engine, model: LlamaModel, reference: Reference
) -> None:
    running = model.tokenize(RUNNING.replace("lighthouse", "river"))
    admitted = model.tokenize(ADMITTED.replace("careful", "patient"))
    cut: dict[str, int] = {}
    second = Run(admitted, 12)

    def drive(k: int) -> None:
        if k == 2:
            engine.submit(second.job)
        elif k == 5:  # three steps later: three chunks evaluated, the rest pending
            (slot,) = [s for s in engine.slots if s.job is second.job]
            cut["reused"], cut["cached"] = slot.reused, len(slot.cached)
            cut["pending"] = len(slot.pending)
            second.job.cancel()

    first = Run(running, 20, hook=drive)
    engine.submit(first.job)
    assert second.done.wait(600)
    assert isinstance(second.end, Failed) and second.end.status == 499
    assert cut["cached"] == cut["reused"] + 3 * CHUNK
    assert cut["pending"] == len(admitted) - cut["cached"]
    first.finished()
    again = Run(admitted, 12)
    engine.submit(again.job)
    end = again.finished()
    assert end.cached_tokens == cut["cached"]  # the slot kept what was evaluated
    assert generated(end, admitted) == expected(reference, admitted, 12)
    # and the whole prompt is cached now, but for its last token
    repeat = Run(admitted, 4)
    engine.submit(repeat.job)
    end = repeat.finished()
    assert end.cached_tokens == len(admitted) - 1
    assert generated(end, admitted) == expected(reference, admitted, 4)


def test_a_burst_of_prompts_is_not_chunked(model: LlamaModel, reference: Reference) -> None:
    """Two prompts admitted beside one decoding stream go whole, in one step."""
    settings = ContextSettings(
        n_ctx=3 * 512, n_seq_max=3, n_threads=1, n_threads_batch=1, flash_attention=True
    )
    engine = Engine(model, settings, prefill_chunk=CHUNK)
    try:
        running = model.tokenize(RUNNING)
        burst = [model.tokenize(ADMITTED.replace("three", word)) for word in ("3", "the")]
        runs = [Run(tokens, 6) for tokens in burst]
        seen: dict[str, int] = {}

        def first_token(k: int) -> None:
            seen.setdefault("first", len(first.tokens))

        runs[0].hook = first_token

        def submit_burst(k: int) -> None:
            if k == 2:
                for run in runs:
                    engine.submit(run.job)

        first = Run(running, 12, hook=submit_burst)
        engine.submit(first.job)
        first.finished()
        assert seen["first"] == 3  # the step after the burst was admitted carried it whole
        for run, tokens in zip(runs, burst, strict=True):
            assert generated(run.finished(), tokens) == expected(reference, tokens, 6)
    finally:
        engine.close()


def test_a_prompt_alone_is_not_chunked(
    engine: Engine, model: LlamaModel, reference: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing decoding, the prompt goes in one step; the answer is the same."""
    prompt = model.tokenize(ADMITTED.replace("colours", "colors"))
    batch = engine.batch
    assert batch is not None
    steps: list[int] = []
    fill = batch.fill

    def counting(
        slots: list[Slot], chunk: int, always_chunk: bool = False
    ) -> list[tuple[Slot, int]]:
        out = fill(slots, chunk, always_chunk)
        steps.append(batch.n)
        return out

    monkeypatch.setattr(batch, "fill", counting)
    run = Run(prompt, 3)
    engine.submit(run.job)
    end = run.finished()
    assert steps == [len(prompt) - end.cached_tokens, 1, 1]
    assert generated(end, prompt) == expected(reference, prompt, 3)
