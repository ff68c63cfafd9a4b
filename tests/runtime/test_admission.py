"""The inter-token latency budget (runtime/admission.py): which step costs admit how many
streams and how much prompt, and, in the engine, that a budget of one stream's step runs
concurrent requests one after the other, first in first out, each with the answer
llama-cpp-python gives alone, while without a budget they interleave. No timing is
asserted: the costs are fed in, or the budget is one a second stream can never fit."""

from __future__ import annotations

import threading

import pytest

from runtime.admission import ALPHA, CLAMP, ItlBudget
from runtime.config import DEFAULT_ITL_BUDGET, itl_budget_from_env
from runtime.engine import Engine, Event, Failed, Finished, Generation, Token
from runtime.llama import ContextSettings, LlamaModel
from runtime.sampling import SamplingSpec
from tests.runtime.llama_reference import Reference

MS = 1e-3
GREEDY = SamplingSpec(temperature=0)
PROMPTS = [
    f"<|im_start|>user\nWrite a long story about {topic}.<|im_end|>\n<|im_start|>assistant\n"
    for topic in ("a lighthouse", "a river", "a mountain")
]


def linear(budget: ItlBudget, first: float, each: float, counts: range) -> None:
    """Steps costing `first` for one token and `each` for every further one."""
    for n in counts:
        for _ in range(50):
            budget.record(n, first + each * (n - 1))


def test_before_any_step_a_token_is_assumed_to_cost_a_whole_step() -> None:
    assert ItlBudget(2.5, 8).streams() == 2
    assert ItlBudget(1.0, 8).streams() == 1
    assert ItlBudget(20, 8).streams() == 8  # never more than the slots
    assert ItlBudget(2.5, 8).prompt_room(1, 32) == 1
    one = ItlBudget(2.5, 8)
    linear(one, 100 * MS, 0, range(40, 41))  # one prompt of 40 tokens seen: no line yet
    assert one.streams() == 2


def test_streams_fit_the_budget_by_measured_costs() -> None:
    budget = ItlBudget(2.0, 8)
    linear(budget, 10 * MS, 6 * MS, range(1, 3))
    assert budget.streams() == 2  # 16 ms <= 20 ms < 22 ms (extrapolated)
    budget.factor = 3.0
    assert budget.streams() == 4  # 28 ms <= 30 ms < 34 ms
    budget.factor = 1.0
    assert budget.streams() == 1
    cheap = ItlBudget(2.0, 8)  # a fixed cost dominates: every slot fits
    linear(cheap, 10 * MS, 1 * MS, range(1, 3))
    assert cheap.streams() == 8


def test_a_prompt_gives_the_line_its_points() -> None:
    budget = ItlBudget(2.5, 8)
    linear(budget, 16 * MS, 0, range(2, 3))  # two streams seen, one never
    assert budget.streams() == 2  # in proportion: 8 ms for one
    linear(budget, 10 * MS, 6 * MS, range(33, 34))  # a 32-token chunk beside a stream
    assert budget.estimate(1) == pytest.approx(10 * MS)
    assert budget.streams() == 3  # 22 ms <= 25 ms < 28 ms


def test_prompt_chunks_fit_beside_the_streams() -> None:
    budget = ItlBudget(2.0, 8)
    linear(budget, 10 * MS, 1 * MS, range(1, 3))
    assert budget.prompt_room(1, 32) == 10  # 11 tokens: 20 ms
    assert budget.prompt_room(4, 32) == 7
    assert budget.prompt_room(4, 5) == 5  # never more than the chunk
    assert budget.prompt_room(12, 32) == 1  # over the budget already: a prompt still moves


def test_an_interrupted_step_moves_the_average_a_bounded_amount() -> None:
    budget = ItlBudget(2.0, 4)
    linear(budget, 10 * MS, 0, range(1, 2))
    budget.record(1, 1000 * MS)
    assert budget.estimate(1) == pytest.approx(10 * MS * (1 + ALPHA * (CLAMP - 1)))


@pytest.mark.parametrize(
    ("raw", "factor"),
    [("", DEFAULT_ITL_BUDGET), ("0", 0.0), ("off", 0.0), ("2", 2.0), ("3.5", 3.5),
     ("0.5", 1.0), ("-1", DEFAULT_ITL_BUDGET), ("fast", DEFAULT_ITL_BUDGET)],
)  # fmt: skip
def test_budget_from_env(raw: str, factor: float) -> None:
    assert itl_budget_from_env({"MFC_ITL_BUDGET": raw}) == factor


# --- in the engine ----------------------------------------------------------------------


def engine_with(model: LlamaModel, itl_budget: float) -> Engine:
    settings = ContextSettings(
        n_ctx=3 * 512, n_seq_max=3, n_threads=1, n_threads_batch=1, flash_attention=True
    )
    return Engine(model, settings, itl_budget=itl_budget)


class Log:
    """Every run's events in the order the engine delivered them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []
        self.lock = threading.Lock()

    def order(self) -> str:
        """Who got each event: a run's letter for a token, upper case for its end."""
        return "".join(n if isinstance(e, Token) else n.upper() for n, e in self.events)


class Run:
    def __init__(self, log: Log, name: str, prompt: list[int], n: int) -> None:
        self.log, self.name, self.prompt = log, name, prompt
        self.done = threading.Event()
        self.end: Finished | Failed | None = None
        self.job = Generation(prompt, GREEDY, self.on, num_predict=n)

    def on(self, event: Event) -> None:
        with self.log.lock:
            self.log.events.append((self.name, event))
        if not isinstance(event, Token):
            self.end = event
            self.done.set()

    def generated(self) -> list[int]:
        assert self.done.wait(600)
        assert isinstance(self.end, Finished), self.end
        return self.end.context[len(self.prompt) :]


def expected(reference: Reference, prompt: list[int], n: int) -> list[int]:
    return [step.token for step in reference.greedy(prompt, n)]


def submit_all(engine: Engine, runs: list[Run]) -> None:
    """Submit `runs` in order from the engine thread: all are waiting at its next admission."""

    def task() -> None:
        for run in runs:
            engine.submit(run.job)

    engine.call(task)


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("itl_budget", [1.0, 0.0])
def test_a_one_stream_budget_runs_requests_one_after_the_other(
    smollm2_model: LlamaModel, smollm2_reference: Reference, itl_budget: float
) -> None:
    """Three slots free; with a budget of one stream's step the second request starts
    after the first ends, without a budget their tokens interleave."""
    engine = engine_with(smollm2_model, itl_budget)
    try:
        log = Log()
        prompts = [smollm2_model.tokenize(p) for p in PROMPTS[:2]]
        runs = [Run(log, name, p, 16) for name, p in zip("ab", prompts, strict=True)]
        submit_all(engine, runs)
        results = [run.generated() for run in runs]
        order = log.order()
        if itl_budget:
            assert order.index("A") < order.index("b"), order
        else:
            assert order.index("b") < order.index("A"), order
        assert results == [expected(smollm2_reference, p, 16) for p in prompts]
        assert engine.waiting == 0
    finally:
        engine.close()


@pytest.mark.oracle
@pytest.mark.slow
def test_a_queued_request_cancelled_leaves_the_queue(
    smollm2_model: LlamaModel, smollm2_reference: Reference
) -> None:
    engine = engine_with(smollm2_model, itl_budget=1.0)
    try:
        log = Log()
        prompts = [smollm2_model.tokenize(p) for p in PROMPTS]
        first, queued, last = (Run(log, n, p, 12) for n, p in zip("abc", prompts, strict=True))
        waiting: list[int] = []

        def cancel_queued(event: Event) -> None:  # on the engine thread, `a` running
            Run.on(first, event)
            if isinstance(event, Token) and not queued.job.cancelled:
                waiting.append(engine.waiting)
                queued.job.cancel()
                engine.wake()

        first.job.on_event = cancel_queued
        submit_all(engine, [first, queued, last])
        assert first.generated() == expected(smollm2_reference, prompts[0], 12)
        assert last.generated() == expected(smollm2_reference, prompts[2], 12)
        assert waiting == [2]
        assert queued.done.wait(60)
        assert isinstance(queued.end, Failed) and queued.end.status == 499
        order = log.order()
        assert "b" not in order  # it never got a token
        assert order.index("A") < order.index("c"), order  # `c` still waited its turn
        assert engine.waiting == 0
    finally:
        engine.close()
