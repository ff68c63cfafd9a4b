"""An inter-token latency budget: how many streams decode together, and how much prompt
joins their steps.

Every running stream gets one token per engine step, so a stream's inter-token latency is
the step time, and a step costs more the more tokens it carries: on a CPU llama.cpp's
cost is close to linear in them. SmolLM2-135M Q4_1, one thread, in-process llama_decode,
CPU ms per step by decoding streams (busy machine, medians): 1: 11.3, 2: 24.7, 3: 29.3,
4: 35.6, 6: 58.0, 8: 63.3; one stream plus a prompt chunk of 1, 4, 8, 32 tokens: 27.3,
45.4, 76.4, 296 (a prompt token costs about what a stream does, ~7.5 ms); sampling is
~0.3 ms a stream. So with every slot decoding at once each stream's tokens come ~5
single-stream steps apart, and no per-step Python work can change that.

`MFC_ITL_BUDGET` (a factor, `ItlBudget.factor`) bounds that: a waiting request is admitted
only while the step with one more stream is estimated to cost at most `factor`
times a step with one stream, and a prompt joins the running streams' steps in chunks
sized to fit the same bound. Requests beyond it wait in the engine's queue, first in
first out: their first token comes later, and aggregate throughput is what that many
streams give.

The costs are learnt online from the engine's own steps (its thread's CPU time, so time
other processes take is not counted), by the number of tokens a step carries, prompt
tokens and streams' tokens alike (they cost about the same, above): an exponentially
weighted average per token count up to RECORDED, and a line through those averages for
counts not seen yet. Before anything is seen, or with one count only, a step is assumed to
cost in proportion to its tokens (pessimistic: the budget admits `floor(factor)` streams
until a line says more fit); prompts, bursts of them included, give the line its points.
"""

from __future__ import annotations

import math

#: weight of a new step in the averages (~20 steps, a fraction of a second of decoding)
ALPHA = 0.05
#: a step costing more than this many times its average counts as this many (a step the
#: machine interrupted should not move the average far)
CLAMP = 3.0
#: steps of more tokens are not recorded (a long prompt's attention grows faster than
#: linearly, and the budget only ever asks about a few tokens more than the slots)
RECORDED = 128


def _blend(average: float, sample: float) -> float:
    if average <= 0:
        return sample
    return average + ALPHA * (min(sample, CLAMP * average) - average)


class ItlBudget:
    """Step cost estimates and the admission limits they give for `factor` (>= 1)."""

    def __init__(self, factor: float, slots: int) -> None:
        self.factor = max(factor, 1.0)
        self.slots = slots
        #: tokens in a step -> average seconds of such steps
        self.costs: dict[int, float] = {}
        self._line: tuple[float, float] | None = None  # (intercept, slope), from `costs`

    def record(self, tokens: int, seconds: float) -> None:
        """One step's cost."""
        if 0 < tokens <= RECORDED:
            self.costs[tokens] = _blend(self.costs.get(tokens, 0.0), seconds)
            self._line = None

    def estimate(self, tokens: int) -> float:
        """Seconds of a step carrying `tokens` tokens (0.0 while nothing is known)."""
        seen = self.costs.get(tokens, 0.0)
        if seen > 0 or not self.costs:
            return seen
        if len(self.costs) == 1:
            ((n, t),) = self.costs.items()
            return t * tokens / n
        intercept, slope = self._fit()
        return max(intercept + slope * tokens, 1e-9)

    def _fit(self) -> tuple[float, float]:
        if self._line is None:
            n = len(self.costs)
            mean_x = sum(self.costs) / n
            mean_y = sum(self.costs.values()) / n
            spread = sum((x - mean_x) ** 2 for x in self.costs)
            cov = sum((x - mean_x) * (y - mean_y) for x, y in self.costs.items())
            slope = max(cov / spread, 0.0)
            self._line = (mean_y - slope * mean_x, slope)
        return self._line

    def tokens(self, most: int) -> int:
        """How many tokens (up to `most`) a step may carry; at least one."""
        limit = self.factor * self.estimate(1)
        if limit <= 0:
            return max(1, min(most, math.floor(self.factor)))
        best = 1
        while best < most and self.estimate(best + 1) <= limit * (1 + 1e-9):
            best += 1
        return best

    def streams(self) -> int:
        """How many streams may decode together (at least one, at most the slots)."""
        return self.tokens(self.slots)

    def prompt_room(self, decoding: int, most: int) -> int:
        """Prompt tokens (up to `most`) a step with `decoding` streams may carry; at least
        one, so a prompt always moves on."""
        return max(1, self.tokens(decoding + most) - decoding)
