"""Content-addressed blobs: `blobs/sha256-<hex>`, written once, atomically.

Every write streams into a temp file under `<root>/.mfc/tmp/` while hashing, fsyncs it,
then renames it into `blobs/` and fsyncs the folder: a reader (or Ollama) never sees a
partial blob, and a process killed mid-write leaves only a temp file, which the next
writer removes. Temp names start with the writer's pid so a live writer's file is kept.

Every way into `blobs/` goes through here, and every digest check with it: `write_stream`
(= `stage` + `commit`) for bytes from a stream, `import_file` for a file being copied,
`adopt` for a finished temp file (a pass's output, a registry download). A caller that
expects a digest gets `BlobMismatchError` and nothing is kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeGuard

from quant.files import file_mode, pid_alive
from toolchain.progress import ByteProgress
from toolchain.store.errors import BlobError, BlobMismatchError

#: matched with `fullmatch` (a `$` would also accept a trailing newline)
DIGEST_RE = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
#: the one spelling a digest has in a manifest mfc writes or accepts from elsewhere
CANONICAL_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
CHUNK = 1 << 20


def parse_digest(digest: str) -> str:
    """The hex part of `sha256:<hex>` or `sha256-<hex>`; raises `BlobError` otherwise."""
    m = DIGEST_RE.fullmatch(digest)
    if not m:
        raise BlobError(f"invalid digest format: {digest!r}")
    return m.group(1)


def is_digest(digest: str) -> bool:
    """Whether `digest` has a form the reference accepts (`sha256:` or `sha256-`, any case)."""
    return DIGEST_RE.fullmatch(digest) is not None


def _digest_of_name(name: str) -> str | None:
    """`sha256-<hex>` (a file name in `blobs/`) -> `sha256:<hex>`; None for other names."""
    digest = name.replace("sha256-", "sha256:", 1)
    return digest if is_digest(digest) else None


def is_canonical_digest(digest: object) -> TypeGuard[str]:
    """Whether `digest` is `sha256:` + 64 lowercase hex: the form a manifest must use."""
    return isinstance(digest, str) and CANONICAL_DIGEST_RE.fullmatch(digest) is not None


def digest_of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of_file(path: str | os.PathLike[str], progress: ByteProgress | None = None) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (hashlib releases the GIL)."""
    h = hashlib.sha256()
    done = 0
    with Path(path).open("rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            done += n
            if progress is not None:
                progress(done)
    return "sha256:" + h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_digest_matches(actual: str, expected: str) -> None:
    """Raise `BlobMismatchError` unless bytes hashed to `actual` are the blob `expected`."""
    if actual != "sha256:" + parse_digest(expected).lower():
        raise BlobMismatchError(expected, actual)


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Hashed, fsynced bytes in the store's temp area that are not a blob yet."""

    path: Path
    digest: str
    size: int

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class BlobWrite:
    """The outcome of a write: the blob's digest and size, and whether it was new."""

    digest: str
    size: int
    created: bool


class Blobs:
    """The `blobs/` folder of a store, plus its temp area."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs"
        self.tmp_dir = root / ".mfc" / "tmp"

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (`sha256:` becomes `sha256-`)."""
        return self.dir / f"sha256-{parse_digest(digest)}"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading; raises `BlobError` if it is missing."""
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobError(f"blob {digest} not found") from None

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def touch(self, digest: str) -> None:
        """Mark a blob as used now (protects it from a time-based prune, as the reference does)."""
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            raise BlobError(f"blob {digest} not found") from None

    def verify(self, digest: str) -> bool:
        """Whether the blob exists and its bytes hash to its digest."""
        path = self.path(digest)
        if not path.is_file():
            return False
        try:
            check_digest_matches(digest_of_file(path), digest)
        except BlobMismatchError:
            return False
        return True

    def remove(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> list[str]:
        """Digests of the complete blobs on disk (temp and partial files are not blobs)."""
        if not self.dir.is_dir():
            return []
        found = (_digest_of_name(e.name) for e in os.scandir(self.dir) if e.is_file())
        return sorted(d for d in found if d is not None)

    def digest_at(self, path: Path) -> str | None:
        """The digest of a blob file of this store given by its path (None for any other
        file: a partial download, a temp file, a file elsewhere)."""
        if path.parent.resolve() != self.dir.resolve():
            return None
        return _digest_of_name(path.name)

    # -- writing ---------------------------------------------------------------------------

    def clean_stale_temps(self) -> int:
        """Remove temp files and folders (`<pid>-...`) whose writer is no longer running."""
        if not self.tmp_dir.is_dir():
            return 0
        removed = 0
        for entry in os.scandir(self.tmp_dir):
            pid, _, _ = entry.name.partition("-")
            if not pid.isdigit() or pid_alive(int(pid)):
                continue  # not ours (no pid prefix), or its writer is still running
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    Path(entry.path).unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def temp_dir(self) -> Path:
        """A private folder in the temp area, for a tool that writes its own temp files."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.tmp_dir))

    def temp_file(self, suffix: str = ".partial") -> tuple[int, Path]:
        """A new temp file in the store's temp area (same filesystem as `blobs/`)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=suffix, dir=self.tmp_dir)
        return fd, Path(name)

    def stage(
        self,
        chunks: Iterable[bytes] | BinaryIO,
        *,
        expected: str | None = None,
        progress: ByteProgress | None = None,
    ) -> StagedBlob:
        """Write a stream to a temp file of the store while hashing it, and fsync it.

        With `expected`, bytes that hash to anything else are deleted and
        `BlobMismatchError` is raised. The staged file is not a blob yet: `commit` moves it
        into `blobs/` (an import that must check every blob first commits them last).
        """
        fd, tmp = self.temp_file()
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                source: Iterable[bytes] = (
                    iter(lambda: chunks.read(CHUNK), b"") if hasattr(chunks, "read") else chunks
                )
                for chunk in source:
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None:
                check_digest_matches(digest, expected)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedBlob(tmp, digest, size)

    def commit(self, staged: StagedBlob) -> BlobWrite:
        """Move a staged file into `blobs/` (dropping it if the blob is already there)."""
        try:
            return self._commit(staged.path, staged.digest, staged.size)
        finally:
            staged.discard()

    def write_stream(
        self,
        chunks: Iterable[bytes] | BinaryIO,
        *,
        expected: str | None = None,
        progress: ByteProgress | None = None,
    ) -> BlobWrite:
        """Store a stream of bytes as a blob; with `expected`, refuse bytes that don't match it."""
        return self.commit(self.stage(chunks, expected=expected, progress=progress))

    def write_bytes(self, data: bytes) -> BlobWrite:
        """Store bytes as a blob (a no-op apart from a touch if it already exists)."""
        digest = digest_of_bytes(data)
        if self.exists(digest):
            self.touch(digest)
            return BlobWrite(digest, len(data), created=False)
        return self.write_stream([data], expected=digest)

    def import_file(
        self, path: str | os.PathLike[str], digest: str, progress: ByteProgress | None = None
    ) -> BlobWrite:
        """Copy a file into the store as the blob `digest`, verifying the bytes while copying.

        If the blob already exists nothing is copied. If the file changed since it was
        hashed, the copy is discarded and `BlobError` says so.
        """
        if self.exists(digest):
            self.touch(digest)
            return BlobWrite(digest, self.size(digest), created=False)
        try:
            with Path(path).open("rb", buffering=0) as f:
                return self.write_stream(f, expected=digest, progress=progress)
        except BlobMismatchError:
            raise BlobError(f"{path} changed while it was being copied into the store") from None

    def adopt(self, tmp: Path, *, expected: str | None = None) -> BlobWrite:
        """Move a finished file of the temp area (a pass's output, a download) into `blobs/`.

        The file is hashed; with `expected`, one whose bytes hash to anything else is
        deleted and `BlobMismatchError` raised, so nothing corrupt enters the store.
        """
        try:
            digest = digest_of_file(tmp)
            if expected is not None:
                check_digest_matches(digest, expected)
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            return self._commit(tmp, digest, tmp.stat().st_size)
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, digest: str, size: int) -> BlobWrite:
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.path(digest)
        if final.exists():
            os.utime(final)
            return BlobWrite(digest, size, created=False)
        tmp.chmod(file_mode())  # mkstemp made it 0600; a blob reads like any file we write
        tmp.replace(final)
        fsync_dir(self.dir)
        return BlobWrite(digest, size, created=True)
