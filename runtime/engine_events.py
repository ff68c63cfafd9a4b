"""What a request hands the decode engine (`Generation`) and the events it gets back.

Events are delivered through the generation's `on_event`, on the engine thread: `Token`s
of text as it becomes whole, then one `Finished` or `Failed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.logprobs import TokenLogprob
from runtime.sampling import SamplingSpec
from runtime.vision import MediaPrompt


@dataclass(frozen=True)
class Token:
    """Generated text, released once it is whole characters and can't start a stop string,
    with the log probabilities of the tokens it completes (when the request asked)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Finished:
    """A generation ended: why (`stop` or `length`), its counts and timings (ns)."""

    reason: str
    prompt_tokens: int
    prompt_ns: int
    eval_tokens: int
    eval_ns: int
    context: list[int]
    cached_tokens: int = 0  # prompt tokens whose KV was reused from an earlier request


@dataclass(frozen=True)
class Failed:
    status: int
    message: str


Event = Token | Finished | Failed


@dataclass
class Generation:
    """One request to generate from `prompt` (token ids)."""

    prompt: list[int]
    sampling: SamplingSpec
    on_event: Callable[[Event], None]
    num_predict: int = -1
    stop: tuple[str, ...] = ()
    num_keep: int = 4
    shift: bool = True
    truncate: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    media: MediaPrompt | None = None  # images: the prompt is evaluated through libmtmd
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
