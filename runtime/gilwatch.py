"""A debug probe for the longest time one thread kept the GIL (`MFC_DEBUG_GIL_WATCH=FILE`).

A request is answered only when the event loop's thread gets the GIL; a C call that keeps
it (joining, decoding or parsing a 50 MB body) delays every other request by as long.
This watcher sleeps a millisecond at a time and, after each wake-up that came late, asks
how much CPU time each thread of the process used meanwhile. Counted in CPU time, not on
the wall clock, so a busy machine does not make the figure grow: time this thread waited
for a free core (the kernel's run-queue delay, `/proc/thread-self/schedstat`) is taken
off the gap, and a thread that was descheduled used no CPU time. The figure is then the
largest of `min(gap, CPU time of one thread during the gap)`: a bound on what one thread
did while the watcher could not run.

It writes `{"max_hold_ms": ..., "max_gap_ms": ..., "samples": ..., "holder": thread name}`
to FILE (replaced atomically) every WRITE_EVERY seconds. Threads that compute without the
GIL (llama.cpp through ctypes) would count too: the probe is meant for loads that do not
generate.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

SLEEP = 0.001
#: a wake-up later than this is looked into (the sleep itself is not counted)
LATE = 0.002
WRITE_EVERY = 0.2


def _run_delay_ns() -> int:
    """Nanoseconds this thread has waited for a CPU while runnable, since it started."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _thread_cpu() -> dict[int, float]:
    """CPU seconds so far of every other Python thread, by thread id (`ident`)."""
    own = threading.get_ident()
    times: dict[int, float] = {}
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident == own:
            continue
        try:
            times[ident] = time.clock_gettime(time.pthread_getcpuclockid(ident))
        except (OSError, AttributeError):
            continue  # ended meanwhile
    return times


def _thread_name(ident: int) -> str:
    return next((t.name for t in threading.enumerate() if t.ident == ident), "")


class GilWatch:
    """The watcher thread; `start` it once (a daemon: it ends with the process)."""

    def __init__(self, report: Path) -> None:
        self.report = report
        self.max_hold = 0.0
        self.max_gap = 0.0
        self.samples = 0
        self.holder = ""

    def start(self) -> None:
        threading.Thread(target=self._run, name="gil-watch", daemon=True).start()

    def _run(self) -> None:
        written = time.monotonic()
        while True:
            before = _thread_cpu()
            delay = _run_delay_ns()
            start = time.perf_counter()
            time.sleep(SLEEP)
            gap = time.perf_counter() - start - SLEEP
            self.samples += 1
            if gap > LATE:
                gap -= (_run_delay_ns() - delay) / 1e9
                after = _thread_cpu()
                used, ident = max(
                    ((t - before.get(i, 0.0), i) for i, t in after.items()), default=(0.0, 0)
                )
                self.max_gap = max(self.max_gap, gap)
                if min(gap, used) > self.max_hold:
                    self.max_hold = min(gap, used)
                    self.holder = _thread_name(ident)
            if time.monotonic() - written > WRITE_EVERY:
                self._write()
                written = time.monotonic()

    def _write(self) -> None:
        figures = {
            "max_hold_ms": round(self.max_hold * 1000, 2),
            "max_gap_ms": round(self.max_gap * 1000, 2),
            "samples": self.samples,
            "holder": self.holder,
        }
        partial = self.report.with_name(self.report.name + ".tmp")
        partial.write_text(json.dumps(figures))
        partial.replace(self.report)


def start_from_env() -> None:
    """Start the watcher if `MFC_DEBUG_GIL_WATCH` names a report file."""
    target = os.environ.get("MFC_DEBUG_GIL_WATCH")
    if target:
        GilWatch(Path(target)).start()
