"""What the CLI's tables print: sizes, durations and moments the way the reference's CLI
shows them (`ollama list`, `ollama ps`), and its column layout."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import click


def human_size(n: int) -> str:
    """Bytes the way `ollama list` shows them (decimal units): 98 MB, 4.7 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """A duration the way the reference's tables show it (Ollama's `format` package, after
    docker's go-units): `5 seconds`, `About a minute`, `3 hours`, `2 weeks`."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole < 60:
        return "1 second" if whole == 1 else f"{whole} seconds"
    minutes = whole // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round, for positive values
    if hours == 1:
        return "About an hour"
    for limit, unit, size in (
        (48, "hours", 1),
        (24 * 7 * 2, "days", 24),
        (24 * 30 * 2, "weeks", 24 * 7),
        (24 * 365 * 2, "months", 24 * 30),
    ):
        if hours < limit:
            return f"{hours // size} {unit}"
    return f"{whole // 3600 // 24 // 365} years"


def human_time(at: float, now: float | None = None) -> str:
    """A moment relative to now (Unix seconds): `3 hours ago`, `4 minutes from now`, or
    `Forever` past 20 years ahead (a keep-alive that never ends)."""
    delta = (time.time() if now is None else now) - at
    if int(int(delta / 3600) / (24 * 365)) < -20:  # Go: int(delta.Hours())/24/365
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows as the reference's CLI tables print them: left-aligned columns, 4 spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("    ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
