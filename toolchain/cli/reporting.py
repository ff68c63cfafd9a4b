"""Turn progress events into what the user sees: rich progress bars, or JSON lines for CI."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from toolchain.progress import ProgressCallback, ProgressEvent


def print_json(obj: Any) -> None:
    """One compact JSON document per line on stdout (the `--json` output of every command)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


@contextmanager
def reporter(as_json: bool) -> Iterator[ProgressCallback]:
    """A progress callback for the duration of a command.

    With `as_json`, every event is printed as one JSON line (the reference's
    `{"status", "digest", "total", "completed"}`). Otherwise events with a `total` drive a
    bar per status (the bar goes to stderr so stdout stays clean for results), and other
    events print their status line once.
    """
    if as_json:
        yield lambda event: print_json(event.to_json())
        return
    if not _terminal():
        yield _plain()
        return

    # rich costs a tenth of a second to import: only a terminal gets it
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    last_status: list[str] = [""]

    def on_event(event: ProgressEvent) -> None:
        if event.total:
            key = event.status
            if key not in tasks:
                tasks[key] = progress.add_task(event.status, total=event.total)
            progress.update(tasks[key], completed=event.completed or 0, total=event.total)
            return
        if event.status != last_status[0]:
            last_status[0] = event.status
            progress.console.print(event.status, highlight=False, markup=False, soft_wrap=True)

    with progress:
        yield on_event


def _terminal() -> bool:
    """Whether rich would draw on stderr (a terminal, or a terminal forced by the env)."""
    forced = any(os.environ.get(k) for k in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"))
    return forced or sys.stderr.isatty()


def _plain() -> ProgressCallback:
    """What rich shows when stderr is not a terminal: no bars, each new status line once."""
    last = [""]

    def on_event(event: ProgressEvent) -> None:
        if not event.total and event.status != last[0]:
            last[0] = event.status
            sys.stderr.write(event.status + "\n")
            sys.stderr.flush()

    return on_event
