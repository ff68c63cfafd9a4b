"""An inter-token latency budget: how many streams decode together, and how much prompt
joins their steps.

Every running stream gets one token per engine step, so a stream's inter-token latency is
the step time, and a step costs more the more tokens it carries: on a CPU llama.cpp's
cost is close to linear in them (SmolLM2-135M Q4_1, one thread, CPU ms per step: MEASURED).
With every slot decoding at once, each stream's tokens come several single-stream steps
apart. `MFC_ITL_BUDGET` (a factor, `ItlBudget.factor`) bounds that: a waiting request is
admitted only while the step with one more stream is estimated to cost at most `factor`
times a step with one stream, and a prompt joins the running streams' steps in chunks
sized to fit the same bound. Requests beyond it wait in the engine's queue, first in
first out: their first token comes later, and aggregate throughput is what that many
streams give.

The costs are learnt online from the engine's own steps (its thread's CPU time, so time
other processes take is not counted): an exponentially weighted average per number of
decoding streams, a line through those averages for counts not seen yet, and the extra
cost of a prompt token beside them. Before a count has been seen, a step is assumed to cost
in proportion to its streams (pessimistic: the budget then admits `floor(factor)` streams
until the line says more fit).
"""

from __future__ import annotations

import math

#: weight of a new step in the averages (~20 steps, a fraction of a second of decoding)
ALPHA = 0.05
#: a step costing more than this many times its average counts as this many (a step the
#: machine interrupted should not move the average far)
CLAMP = 3.0


def _blend(average: float, sample: float) -> float:
    if average <= 0:
        return sample
    return average + ALPHA * (min(sample, CLAMP * average) - average)


class ItlBudget:
    """Step cost estimates and the admission limits they give for `factor` (>= 1)."""

    def __init__(self, factor: float, slots: int) -> None:
        self.factor = max(factor, 1.0)
        self.slots = slots
        #: index d: average seconds of a step decoding d streams with no prompt (0: unseen)
        self.decode = [0.0] * (slots + 1)
        #: average extra seconds one prompt token adds to a step with streams decoding
        self.prompt_token = 0.0

    def record(self, decoding: int, prompt: int, seconds: float) -> None:
        """One step's cost: `decoding` streams' tokens and `prompt` prompt tokens."""
        if not 0 < decoding <= self.slots:
            return  # a prompt alone delays no stream
        if prompt == 0:
            self.decode[decoding] = _blend(self.decode[decoding], seconds)
            return
        base = self.estimate(decoding)
        if base > 0:
            self.prompt_token = _blend(self.prompt_token, max(seconds - base, 0.0) / prompt)

    def estimate(self, decoding: int) -> float:
        """Seconds of a step decoding `decoding` streams (0.0 while nothing is known)."""
        seen = self.decode[decoding] if decoding <= self.slots else 0.0
        if seen > 0:
            return seen
        known = [(d, t) for d, t in enumerate(self.decode) if t > 0]
        if not known:
            return 0.0
        if len(known) == 1:
            ((d, t),) = known
            return t * decoding / d
        n = len(known)
        mean_d = sum(d for d, _ in known) / n
        mean_t = sum(t for _, t in known) / n
        spread = sum((d - mean_d) ** 2 for d, _ in known)
        slope = max(sum((d - mean_d) * (t - mean_t) for d, t in known) / spread, 0.0)
        return max(mean_t + slope * (decoding - mean_d), 1e-9)

    def _limit(self) -> float:
        return self.factor * self.estimate(1)

    def streams(self) -> int:
        """How many streams may decode together (at least one)."""
        limit = self._limit()
        if limit <= 0:
            return max(1, min(self.slots, math.floor(self.factor)))
        best = 1
        for d in range(2, self.slots + 1):
            if self.estimate(d) > limit * (1 + 1e-9):
                break
            best = d
        return best

    def prompt_room(self, decoding: int) -> int:
        """Prompt tokens a step with `decoding` streams may carry (at least one, so a
        prompt always moves on)."""
        limit = self._limit()
        base = self.estimate(decoding)
        per = self.prompt_token or self.estimate(decoding + 1) - base
        if limit <= 0 or per <= 0:
            return max(1, math.floor(self.factor) - decoding)
        return max(1, math.floor((limit - base) / per + 1e-9))
