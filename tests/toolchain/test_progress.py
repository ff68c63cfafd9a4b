"""The one progress throttle (`ByteMeter`) that build, convert and the registry share."""

from __future__ import annotations

import itertools

from toolchain.progress import ByteMeter, ProgressEvent


def test_steps_throttle_keeps_the_first_and_the_final_count() -> None:
    events: list[ProgressEvent] = []
    meter = ByteMeter(events.append, "copying", 1000, "sha256:x", steps=10)
    for done in [*range(0, 1000, 7), 1000, 1000]:
        meter.update(done)
    counts = [e.completed for e in events]
    assert counts[0] is None  # 0 bytes: `completed` left out, as the reference does
    assert counts[-2:] == [1000, 1000]  # every final count is reported
    between = [0, *(c or 0 for c in counts[1:-2])]  # before the final ones: 1/10 apart
    assert all(b - a >= 100 for a, b in itertools.pairwise(between))
    assert len(between) >= 9 and len(events) <= 12
    assert {(e.status, e.digest, e.total) for e in events} == {("copying", "sha256:x", 1000)}


def test_interval_throttle_drops_counts_that_come_too_soon() -> None:
    events: list[ProgressEvent] = []
    meter = ByteMeter(events.append, "pulling", 10, interval=3600.0)
    for done in range(1, 11):
        meter.update(done)
    assert [e.completed for e in events] == [1, 10]
