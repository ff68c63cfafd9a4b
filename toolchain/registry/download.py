"""Resumable, parallel, ranged blob downloads, verified against their digest.

A blob is fetched into `blobs/sha256-<hex>-partial` (a sparse file of the final size) in
parts, each its own `Range` request, several at a time. Every part keeps its progress in
`blobs/sha256-<hex>-partial-<N>` as `{"N","Offset","Size","Completed"}`: the same files and
JSON the reference writes, so an interrupted pull (killed connection, Ctrl-C, crash) resumes
where each part stopped, in this process (retries) or the next one.

When every part is complete the pull hands the file to the store (`Blobs.adopt` with the
expected digest), which hashes it and renames it to `blobs/sha256-<hex>` only if it matches.
A mismatch deletes the partial file and its state, so nothing corrupt is left in the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import httpx

from toolchain.gojson import GoStruct, encode
from toolchain.registry.client import RegistryClient
from toolchain.registry.errors import RegistryBusyError, RegistryError

MB = 1000 * 1000  # the reference sizes parts in decimal megabytes


@dataclass(frozen=True, slots=True)
class DownloadTuning:
    """How a blob is split and fetched (the defaults are the reference's)."""

    parts: int = 16  # target number of parts
    min_part: int = 100 * MB
    max_part: int = 1000 * MB
    parallel: int = 4  # concurrent range requests per blob
    retries: int = 6  # consecutive failed attempts (no bytes received) before giving up
    backoff: float = 0.25  # seconds, doubled per consecutive failure
    state_interval: float = 0.5  # seconds between state-file writes of one part

    def part_size(self, total: int) -> int:
        return max(1, min(self.max_part, max(self.min_part, -(-total // self.parts))))


@dataclass(slots=True)
class Part:
    n: int
    offset: int
    size: int
    completed: int = 0

    def to_json(self) -> bytes:
        """The part's state file, as the reference's Go `json.Marshal` writes it."""
        state = GoStruct(N=self.n, Offset=self.offset, Size=self.size, Completed=self.completed)
        return encode(state, newline=False)


def plan_parts(total: int, tuning: DownloadTuning) -> list[Part]:
    """Split [0, total) into consecutive parts of `tuning.part_size(total)` bytes."""
    step = tuning.part_size(total)
    return [
        Part(n, offset, min(step, total - offset)) for n, offset in enumerate(range(0, total, step))
    ]


def partial_path(blob: Path) -> Path:
    return blob.with_name(blob.name + "-partial")


def state_path(blob: Path, n: int) -> Path:
    return blob.with_name(f"{blob.name}-partial-{n}")


def load_parts(blob: Path, total: int) -> list[Part] | None:
    """The saved parts of an interrupted download, if they still describe this blob."""
    partial = partial_path(blob)
    try:
        if partial.stat().st_size != total:
            return None
    except FileNotFoundError:
        return None
    parts: list[Part] = []
    for path in blob.parent.glob(f"{blob.name}-partial-*"):
        try:
            state = json.loads(path.read_bytes())
            part = Part(int(state["N"]), int(state["Offset"]), int(state["Size"]))
            part.completed = max(0, min(int(state["Completed"]), part.size))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        parts.append(part)
    parts.sort(key=lambda p: p.offset)
    expected = 0
    for i, part in enumerate(parts):
        if part.n != i or part.offset != expected or part.size <= 0:
            return None
        expected += part.size
    return parts if parts and expected == total else None


@contextlib.contextmanager
def blob_lock(blob: Path) -> Iterator[None]:
    """Hold the download lock of `blob` (other processes pulling it wait, then find it there).

    The lock file is removed on release; a waiter that wakes up holding the lock of a
    removed file tries again, so there is never a stale lock left in the store.
    """
    path = blob.with_name(blob.name + "-partial.lock")
    blob.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == path.stat().st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def discard_partial(blob: Path) -> None:
    """Delete an in-progress download of `blob` and its part states."""
    for path in [partial_path(blob), *blob.parent.glob(f"{blob.name}-partial-*")]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Download:
    """One blob in flight: the partial file, its parts and the progress they add up to."""

    def __init__(  # noqa: PLR0917
        self,
        client: RegistryClient,
        repository: str,
        digest: str,
        blob: Path,
        parts: list[Part],
        tuning: DownloadTuning,
        on_progress: Callable[[int], None],
    ) -> None:
        self.client, self.repository, self.digest, self.blob = client, repository, digest, blob
        self.parts, self.tuning, self.on_progress = parts, tuning, on_progress
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.completed = sum(p.completed for p in parts)
        self.fd = -1

    def run(self) -> None:
        pending = [p for p in self.parts if p.completed < p.size]
        self.on_progress(self.completed)
        if not pending:
            return
        self.fd = os.open(partial_path(self.blob), os.O_RDWR)
        try:
            workers = max(1, min(self.tuning.parallel, len(pending)))
            with ThreadPoolExecutor(workers, thread_name_prefix="mfc-pull") as pool:
                futures = [pool.submit(self.fetch, part) for part in pending]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                finally:  # an error, or Ctrl-C in this thread: the other parts stop too
                    errors = [e for e in (f.exception() for f in futures if f.done()) if e]
                    if errors or not all(f.done() for f in futures):
                        self.stop.set()
                if errors:
                    wait(futures)
                    raise errors[0]
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1

    def fetch(self, part: Part) -> None:
        failures = 0
        saved_at = time.monotonic()
        try:
            while part.completed < part.size and not self.stop.is_set():
                before = part.completed
                try:
                    saved_at = self._stream(part, saved_at)
                    if part.completed < part.size and not self.stop.is_set():
                        raise httpx.RemoteProtocolError("response ended before the range did")
                except (httpx.TransportError, RegistryBusyError) as exc:
                    failures = 0 if part.completed > before else failures + 1
                    if failures > self.tuning.retries:
                        raise RegistryError(
                            f"pull blob {self.digest}: {exc} (gave up after {failures} attempts; "
                            "run the pull again to resume)"
                        ) from exc
                    self._save(part)
                    time.sleep(self.tuning.backoff * (2 ** max(0, failures - 1)))
        finally:
            self._save(part)

    def _stream(self, part: Part, saved_at: float) -> float:
        start = part.offset + part.completed
        end = part.offset + part.size
        with self.client.open_blob(self.repository, self.digest, start, end) as response:
            # a registry that ignores Range sends the whole blob: skip to our offset
            skip = start if response.status_code == 200 else 0
            for chunk in response.iter_bytes():
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                room = part.size - part.completed
                if len(chunk) > room and response.status_code == 206:
                    raise RegistryError(
                        f"pull blob {self.digest}: the registry sent more bytes than requested"
                    )
                chunk = chunk[:room]
                os.pwrite(self.fd, chunk, part.offset + part.completed)
                part.completed += len(chunk)
                with self.lock:
                    self.completed += len(chunk)
                    self.on_progress(self.completed)
                now = time.monotonic()
                if now - saved_at >= self.tuning.state_interval:
                    self._save(part)
                    saved_at = now
                if part.completed >= part.size or self.stop.is_set():
                    break
        return saved_at

    def _save(self, part: Part) -> None:
        state_path(self.blob, part.n).write_bytes(part.to_json())


def fetch_blob(
    client: RegistryClient,
    repository: str,
    digest: str,
    size: int,
    blob: Path,
    *,
    on_progress: Callable[[int], None],
    tuning: DownloadTuning | None = None,
) -> None:
    """Download blob `digest` of `size` bytes into `partial_path(blob)`, resuming if possible.

    `on_progress(completed_bytes)` is called (from worker threads, serialised) as bytes land.
    On error the partial download stays, to be resumed by the next call. Nothing here
    checks the bytes: the store's `Blobs.adopt(partial, expected=digest)` does.
    """
    tuning = tuning or DownloadTuning()
    parts = load_parts(blob, size)
    if parts is None:
        discard_partial(blob)
        blob.parent.mkdir(parents=True, exist_ok=True)
        check_room(blob.parent, digest, size)
        parts = plan_parts(size, tuning)
        try:
            with partial_path(blob).open("wb") as f:
                f.truncate(size)
            for part in parts:
                state_path(blob, part.n).write_bytes(part.to_json())
        except OSError as exc:
            discard_partial(blob)
            raise RegistryError(
                f"cannot store blob {digest} of {size} bytes: {exc.strerror or exc}"
            ) from None
    _Download(client, repository, digest, blob, parts, tuning, on_progress).run()


def check_room(folder: Path, digest: str, size: int) -> None:
    """Refuse a blob larger than the free space of the store's file system up front (a
    sparse partial file would only fail once the disk is full)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if size > free:
        raise RegistryError(
            f"not enough disk space for blob {digest}: it has {size} bytes, "
            f"{free} are free in {folder}",
            hint="free some space (`mfc rm` unused models, `mfc prune`) or pull into "
            "another store (--models DIR)",
        )


def forget_parts(blob: Path) -> None:
    """Remove the part-state files of a committed download."""
    for path in blob.parent.glob(f"{blob.name}-partial-*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
