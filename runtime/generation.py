"""One generation from a handler's point of view: hold a runner, run the job, yield pieces.

`hold` admits the request (503 past the queue), leases a runner (loading the model) and
always gives both back. `generate` submits a Generation to the runner's engine and turns
its events into `Piece`s (content, thinking, tool calls) and one `Final` with the
reference's counts and durations; leaving the iterator early cancels the generation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from runtime.engine import Event, Failed, Finished, Generation, Token
from runtime.errors import ApiError
from runtime.logprobs import TokenLogprob
from runtime.metrics import current_request
from runtime.models import ServedModel
from runtime.options import Options
from runtime.sampling import SamplingSpec
from runtime.scheduler import Runner, Scheduler
from runtime.tools import ToolCall, ToolCallParser
from runtime.vision import MediaPrompt


@dataclass
class Piece:
    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass
class Final:
    done_reason: str
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: list[int]


GRACE_OVER = "server is shutting down: the grace period ended before the response did"


class EventQueue:
    """Engine events delivered onto the event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def put(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    async def get(self) -> Event:
        return await self.queue.get()


@asynccontextmanager
async def hold(
    scheduler: Scheduler, model: ServedModel, opts: Options, keep_alive: float | None
) -> AsyncIterator[Runner]:
    """Admit the request and lease a runner for it for the duration of the block."""
    record = current_request()
    scheduler.admit()
    try:
        with record.waiting(model.name):
            lease = await scheduler.acquire(model, opts, keep_alive)
        try:
            with record.holding(model.name):
                yield lease.runner
        finally:
            lease.release()
    finally:
        scheduler.done()


def sampling_for(opts: Options, grammar: str | None) -> SamplingSpec:
    """The sampling part of a request's options (the fields share their names)."""
    names = [f.name for f in dataclasses.fields(SamplingSpec) if f.name != "grammar"]
    return SamplingSpec(**{name: getattr(opts, name) for name in names}, grammar=grammar)


class ThinkingParser:
    """Split `<think>...</think>` reasoning from the answer, across chunk boundaries."""

    def __init__(self, opening: str = "<think>", closing: str = "</think>") -> None:
        self.opening = opening
        self.closing = closing
        self.state = "start"  # start -> thinking -> content
        self.buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        """(thinking, content) released by this text."""
        self.buffer += text
        thinking = content = ""
        if self.state == "start":
            head = self.buffer.lstrip()
            if head.startswith(self.opening):
                self.buffer = head[len(self.opening) :].lstrip()
                self.state = "thinking"
            elif self.opening.startswith(head):
                return "", ""
            else:
                self.state = "content"
        if self.state == "thinking":
            at = self.buffer.find(self.closing)
            if at >= 0:
                thinking = self.buffer[:at]
                self.buffer = self.buffer[at + len(self.closing) :].lstrip()
                self.state = "content"
            else:
                keep = next(
                    (
                        n
                        for n in range(len(self.closing) - 1, 0, -1)
                        if self.buffer.endswith(self.closing[:n])
                    ),
                    0,
                )
                thinking = self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(thinking) :]
                return thinking, ""
        if self.state == "content":
            content, self.buffer = self.buffer, ""
        return thinking, content


@dataclass
class Job:
    """What to generate: token ids, options, grammar, and how to read the output."""

    tokens: list[int]
    options: Options
    grammar: str | None = None
    shift: bool = True
    truncate: bool = True
    tools: list[dict[str, Any]] | None = None
    template: str | None = None
    think: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    media: MediaPrompt | None = None


def prediction_limit(num_predict: int, runner: Runner) -> int:
    """`num_predict`, capped at ten times the loaded context as the reference caps it: with
    context shifting, a model that never samples a stop token would otherwise run forever
    (`-1`, "infinite", means this cap; so does 0, which the reference does not send on)."""
    cap = 10 * runner.num_ctx * runner.num_parallel
    return cap if num_predict <= 0 or num_predict > cap else num_predict


async def generate(runner: Runner, job: Job) -> AsyncIterator[Piece | Final]:
    """Run `job` on `runner`; cancelled when the caller stops iterating."""
    events = EventQueue()
    gen = Generation(
        prompt=job.tokens,
        sampling=sampling_for(job.options, job.grammar),
        on_event=events.put,
        num_predict=prediction_limit(job.options.num_predict, runner),
        stop=job.options.stop,
        num_keep=job.options.num_keep,
        shift=job.shift,
        truncate=job.truncate,
        logprobs=job.logprobs,
        top_logprobs=job.top_logprobs,
        media=job.media,
    )
    tool_parser = ToolCallParser(job.tools, job.template) if job.tools else None
    thinker = ThinkingParser() if job.think else None
    record = current_request()
    # the drain deadline ends the generation as a failure the stream reports
    uncut = record.on_cut(lambda: events.put(Failed(503, GRACE_OVER)))
    runner.engine.submit(gen)
    finished = False
    try:
        while True:
            event = await events.get()
            if isinstance(event, Token):
                record.token()
                piece = _piece(event.text, thinker, tool_parser, event.logprobs)
                if piece is not None:
                    yield piece
            elif isinstance(event, Finished):
                finished = True
                record.generated(
                    event.prompt_tokens, event.prompt_ns, event.eval_tokens, event.eval_ns
                )
                rest = tool_parser.flush() if tool_parser is not None else ""
                if rest:
                    yield Piece(content=rest)
                yield Final(
                    done_reason=event.reason,
                    prompt_eval_count=event.prompt_tokens,
                    prompt_eval_duration=event.prompt_ns,
                    eval_count=event.eval_tokens,
                    eval_duration=event.eval_ns,
                    context=event.context,
                )
                return
            elif isinstance(event, Failed):
                finished = True
                raise ApiError(event.status, event.message)
    finally:
        uncut()
        if not finished:
            gen.cancel()
            runner.engine.wake()


def _piece(
    text: str,
    thinker: ThinkingParser | None,
    tool_parser: ToolCallParser | None,
    logprobs: tuple[TokenLogprob, ...] = (),
) -> Piece | None:
    """What `text` releases; a piece whose text the parsers still hold carries its logprobs
    anyway, as the reference sends them while its parser buffers."""
    thinking = ""
    content = text
    if thinker is not None and text:
        thinking, content = thinker.feed(text)
    calls: list[ToolCall] = []
    if tool_parser is not None and content:
        content, calls = tool_parser.feed(content)
    if not (content or thinking or calls or logprobs):
        return None
    return Piece(content=content, thinking=thinking, tool_calls=calls, logprobs=logprobs)


def now_ns() -> int:
    return time.perf_counter_ns()
