"""The one progress throttle (`ByteMeter`) that build, convert and the registry share."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

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


def test_reporter_without_a_terminal_prints_statuses_and_skips_rich() -> None:
    """Without a terminal rich would draw no bars, so it is not imported (a tenth of a
    second of every quantize); status lines still print once each, as rich printed them."""
    code = (
        "import sys\n"
        "from toolchain.cli.reporting import reporter\n"
        "from toolchain.progress import ProgressEvent as E\n"
        "with reporter(False) as p:\n"
        "    for e in (E('reading'), E('reading'), E('writing', None, 10, 5), E('done')):\n"
        "        p(e)\n"
        "print('rich' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "TTY_COMPATIBLE"}}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert done.stdout == "False\n"
    assert done.stderr == "reading\ndone\n"
