"""The pass framework: a pass is `run(plan, ctx) -> plan`, named and versioned for the cache.

Passes never print: they report through `ctx.report`, which the CLI turns into progress
bars or `--json` lines and the server into its `/api/create` stream. A pass that writes to
the store calls `ctx.writable()` first, which creates the store and takes its shared lock;
until then the store is untouched, so an input rejected early leaves no trace.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.build.cache import PassKey, lookup, record
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.errors import Span
from toolchain.progress import ByteMeter, ByteProgress, ProgressCallback, ProgressEvent, no_progress
from toolchain.store.gguf_reader import read_gguf
from toolchain.store.store import Store

#: a byte-progress callback reports at most this many events per stream
PROGRESS_STEPS = 50


@dataclass
class BuildContext:
    """What passes share: the store, the progress callback, the pass cache, what was written."""

    store: Store
    progress: ProgressCallback = no_progress
    insecure: bool = False  # a FROM model pulled from a registry may use plain http
    new_blobs: list[str] = field(default_factory=list)
    _locks: ExitStack = field(default_factory=ExitStack)
    _locked: bool = False
    _writable: bool = False

    def report(
        self,
        status: str,
        digest: str | None = None,
        total: int | None = None,
        completed: int | None = None,
    ) -> None:
        self.progress(ProgressEvent(status, digest, total, completed))

    def byte_progress(self, status: str, total: int, digest: str | None = None) -> ByteProgress:
        """A callback for byte counts that reports `status` with total/completed, throttled."""
        return ByteMeter(self.progress, status, total, digest, steps=PROGRESS_STEPS).update

    def writable(self) -> Store:
        """The store, created if needed and locked (shared) until the build ends; the first
        call also clears temp files that killed writers left behind."""
        self._lock()
        if not self._writable:
            self.store.blobs.clean_stale_temps()
            self._writable = True
        return self.store

    def lock_if_exists(self) -> None:
        """Take the shared lock now if the store exists (so what we read can't be removed)."""
        if self.store.root.is_dir():
            self._lock()

    def _lock(self) -> None:
        if not self._locked:
            self._locks.enter_context(
                self.store.shared_lock(
                    on_wait=lambda: self.report("waiting for another mfc process using the store")
                )
            )
            self._locked = True

    def release(self) -> None:
        self._locks.close()
        self._locked = self._writable = False

    @contextmanager
    def unlocked(self) -> Iterator[None]:
        """Let go of the store lock while a nested operation takes the store's locks itself
        (a pull: removing the blobs it replaced needs the exclusive lock, which our shared
        one would block forever); the lock is taken again afterwards."""
        self.release()
        try:
            yield
        finally:
            self.lock_if_exists()


@dataclass(frozen=True, slots=True)
class Pass:
    """A named, versioned step of the build. Bump `version` when its output bytes change."""

    name: str
    version: int
    run: Callable[[BuildPlan, BuildContext], BuildPlan]


def pass_output(
    ctx: BuildContext,
    step: Pass,
    input_digest: str,
    options: dict[str, Any],
    produce: Callable[[Path], None],
    *,
    media_type: str,
    meta: dict[str, Any],
    span: Span | None,
) -> PlannedLayer:
    """The layer `step` produces from `input_digest` with `options`, from the pass cache if
    it is there (keyed on those and the pass's name and version).

    Otherwise `produce(out)` writes the GGUF at `out` (a private temp folder of the store),
    which becomes a blob and a cache entry. The layer is new (no `from`), like the
    reference's rewritten layers.
    """
    store = ctx.writable()
    key = PassKey(input_digest, step.name, step.version, options)
    hit = lookup(store, key)
    created = False
    if hit is not None:
        digest, size = hit.digest, hit.size
    else:
        work = store.blobs.temp_dir()
        try:
            produce(work / "output.gguf")
            written = store.blobs.adopt(work / "output.gguf")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        created = written.created
        if created:
            ctx.new_blobs.append(written.digest)
        record(store, key, written.digest, written.size, meta)
        digest, size = written.digest, written.size
    return PlannedLayer(
        media_type=media_type,
        digest=digest,
        size=size,
        gguf=read_gguf(store.blobs.path(digest)),
        status=f"creating new layer {digest}" if created else "",
        span=span,
    )


def run_passes(plan: BuildPlan, ctx: BuildContext, passes: tuple[Pass, ...]) -> BuildPlan:
    for p in passes:
        plan = p.run(plan, ctx)
    return plan
