"""The model store: manifests by name, content-addressed blobs, and garbage collection.

Layout and bytes are Ollama's (store_api.md §1): `manifests/<host>/<namespace>/<model>/<tag>`
and `blobs/sha256-<hex>`. Reads never create anything; writes go through temp files and
renames; deleting takes the store lock exclusively so it can't race a build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from quant.files import file_mode
from toolchain.store.blobs import Blobs, fsync_dir
from toolchain.store.cache import BuildCache, Eviction
from toolchain.store.errors import ModelNotFoundError, StoreBusyError, StoreError
from toolchain.store.lock import store_lock
from toolchain.store.manifest import Manifest
from toolchain.store.names import ModelName, name_from_parts, parse_name
from toolchain.store.root import env_value, store_root

#: blobs younger than this are never pruned by `prune` (they may belong to a running build)
PRUNE_GRACE_SECONDS = 3600.0

_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def no_prune() -> bool:
    """Whether a model replaced by a build, pull or import keeps the blobs only it used:
    `MFC_NOPRUNE`, else `OLLAMA_NOPRUNE`, read like Go's ParseBool (an unparsable
    non-empty value counts as true, as in the reference)."""
    for var in ("MFC_NOPRUNE", "OLLAMA_NOPRUNE"):
        value = env_value(var)
        if value:
            return value not in _GO_FALSE
    return False


@dataclass(frozen=True, slots=True)
class Garbage:
    """What a garbage collection removed."""

    blobs: list[str]  # digests
    bytes: int
    temp_files: int
    folders: int  # empty manifest folders


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model in the store, as `mfc list` and `/api/tags` show it."""

    name: ModelName
    manifest: Manifest
    modified: float  # the manifest file's mtime (seconds since the epoch)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def size(self) -> int:
        return self.manifest.size


class Store:
    """A store rooted at a folder (`Store.open()` picks the folder the way every command does)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.manifests_dir = self.root / "manifests"
        self.blobs = Blobs(self.root)
        self.cache = BuildCache(self.root, self.blobs)

    @classmethod
    def open(cls, models: str | os.PathLike[str] | None = None) -> Store:
        """The store for `--models DIR`, else $MFC_MODELS, $OLLAMA_MODELS, ~/.ollama/models."""
        return cls(store_root(models))

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- locking ---------------------------------------------------------------------------

    @contextmanager
    def shared_lock(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Held while adding blobs and manifests (builds, copies, pulls)."""
        with store_lock(self.root, exclusive=False, on_wait=on_wait):
            yield

    @contextmanager
    def exclusive_lock(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Held while removing anything (delete, garbage collection)."""
        with store_lock(self.root, exclusive=True, on_wait=on_wait):
            yield

    # -- names and manifests ---------------------------------------------------------------

    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests_dir.joinpath(*name.parts())

    def names(self) -> list[ModelName]:
        """Every valid model name with a manifest file (others are skipped, like the reference)."""
        out: list[ModelName] = []
        if not self.manifests_dir.is_dir():
            return out
        for path in self.manifests_dir.glob("*/*/*/*"):
            if path.is_symlink() or not path.is_file():
                continue
            name = name_from_parts(path.relative_to(self.manifests_dir).parts)
            if name is not None:
                out.append(name)
        return sorted(out, key=str)

    def resolve(self, name: str | ModelName) -> ModelName:
        """Parse a name and give each part the spelling already on disk (case-insensitively).

        `LLaMA3:Latest` resolves to `llama3:latest` when that exists. An exact match of the
        whole name wins; otherwise each part is matched on its own, as the reference does.
        """
        wanted = parse_name(name) if isinstance(name, str) else name
        existing = self.names()
        key = wanted.casefold_key()
        for candidate in existing:
            if candidate.casefold_key() == key:
                return candidate
        parts = list(wanted.parts())
        for candidate in existing:
            for i, part in enumerate(candidate.parts()):
                if part.lower() == parts[i].lower():
                    parts[i] = part
        return ModelName(parts[0], parts[1], parts[2], parts[3], scheme=wanted.scheme)

    def exists(self, name: ModelName) -> bool:
        return self.manifest_path(name).is_file()

    def read_manifest(self, name: str | ModelName) -> Manifest:
        """The manifest for a name (resolved case-insensitively); `ModelNotFoundError` if none."""
        resolved = self.resolve(name)
        try:
            data = self.manifest_path(resolved).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ModelNotFoundError(
                f"model '{resolved.display()}' not found",
                hint="`mfc list` shows the models in this store",
            ) from None
        return Manifest.parse(data)

    def current_manifest(self, name: ModelName) -> Manifest | None:
        """The manifest `name` has now (exact spelling), or None if none or unreadable."""
        try:
            return Manifest.parse(self.manifest_path(name).read_bytes())
        except (OSError, StoreError):
            return None

    def modified(self, name: ModelName) -> float:
        return self.manifest_path(name).stat().st_mtime

    def write_manifest(self, name: ModelName, manifest: Manifest | bytes) -> str:
        """Write a manifest atomically (temp, fsync, rename); returns its hex digest.

        `bytes` are written verbatim (copies and pulls keep the original bytes).
        """
        data = manifest if isinstance(manifest, bytes) else manifest.data
        self.write_file(self.manifest_path(name), data)
        return Manifest.parse(data).digest

    def write_file(self, target: Path, data: bytes) -> None:
        """Replace a small file of the store (a manifest, a cache entry) atomically: a temp
        file in the store's temp area, fsynced, given the umask's mode (0644 under 022),
        renamed over `target`, and the folder fsynced; a reader sees the old bytes or the new
        ones, never a part."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = self.blobs.temp_file(suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(file_mode())
            tmp.replace(target)
            fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def list_models(self) -> list[ModelEntry]:
        """Every model with a readable manifest, most recently modified first."""
        entries = []
        for name in self.names():
            path = self.manifest_path(name)
            try:
                manifest = Manifest.parse(path.read_bytes())
                modified = path.stat().st_mtime
            except (OSError, StoreError):
                continue
            entries.append(ModelEntry(name, manifest, modified))
        entries.sort(key=lambda e: (-e.modified, str(e.name)))
        return entries

    # -- copy, delete, garbage collection --------------------------------------------------

    def copy(self, source: str | ModelName, destination: str | ModelName) -> ModelName:
        """Copy a model: the destination gets the source manifest's bytes; blobs are shared."""
        src = self.resolve(source)
        dst = self.resolve(destination)
        self.read_manifest(src)  # an unknown source fails before the lock creates the store
        with self.shared_lock():
            data = self.read_manifest(src).data
            if dst != src:
                self.write_manifest(dst, data)
        return dst

    def referenced_digests(self) -> set[str]:
        """Every blob digest some manifest on disk references (corrupt manifests are skipped)."""
        refs: set[str] = set()
        for name in self.names():
            try:
                refs |= Manifest.parse(self.manifest_path(name).read_bytes()).digests()
            except (OSError, StoreError):
                continue
        return refs

    def replaced_blobs(self, previous: Manifest | None, current: Manifest) -> set[str]:
        """What writing `current` over `previous` under one name may free: the blobs only the
        old version used, for `remove_unreferenced` (none under `no_prune()`)."""
        if previous is None or no_prune():
            return set()
        return previous.digests() - current.digests()

    def remove_unreferenced(
        self, candidates: Iterable[str], on_wait: Callable[[], None] | None = None
    ) -> list[str]:
        """Delete those of `candidates` that no manifest references, and the build cache's
        orphan entries with their blobs (`store/cache.py`); returns the blobs removed."""
        removed = []
        with self.exclusive_lock(on_wait):
            refs = self.referenced_digests()
            for digest in sorted(set(candidates) - refs):
                if self.blobs.remove(digest):
                    removed.append(digest)
            removed += self.cache.sweep(refs).removed
        return removed

    def delete(self, name: str | ModelName, on_wait: Callable[[], None] | None = None) -> list[str]:
        """Remove a model and every blob of it no other manifest references, with the build
        intermediates only it used (orphan cache entries); returns the blobs removed."""
        resolved = self.resolve(name)
        with self.exclusive_lock(on_wait):
            manifest = self.read_manifest(resolved)
            self.manifest_path(resolved).unlink()
            self._prune_empty_dirs(self.manifest_path(resolved).parent)
            refs = self.referenced_digests()
            removed = []
            for digest in sorted(manifest.digests() - refs):
                if self.blobs.remove(digest):
                    removed.append(digest)
            removed += self.cache.sweep(refs).removed
        return removed

    def evict_cache(
        self,
        *,
        older_than: float | None = None,
        max_size: int | None = None,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
    ) -> Eviction:
        """`BuildCache.evict` under the exclusive lock (`wait=False`: `StoreBusyError` if busy)."""
        with self.exclusive_lock(self._busy(wait, on_wait)):
            refs = self.referenced_digests()
            return self.cache.evict(refs, older_than=older_than, max_size=max_size, now=time.time())

    def _busy(self, wait: bool, on_wait: Callable[[], None] | None) -> Callable[[], None]:
        def busy() -> None:
            if not wait:
                raise StoreBusyError(f"the store {self.root} is in use by another mfc process")
            if on_wait is not None:
                on_wait()

        return busy

    def _prune_empty_dirs(self, start: Path) -> None:
        d = start
        while d != self.manifests_dir and self.manifests_dir in d.parents:
            try:
                d.rmdir()
            except OSError:
                return
            d = d.parent

    def prune(self, grace_seconds: float = PRUNE_GRACE_SECONDS) -> list[str]:
        """Full garbage collection: delete blobs no manifest references and left-over temp files.

        Blobs modified within `grace_seconds` are kept (a concurrent writer may be about to
        reference them). Returns the digests removed; `collect_garbage` says more.
        """
        return self.collect_garbage(grace_seconds).blobs

    def collect_garbage(
        self,
        grace_seconds: float = 0.0,
        *,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
    ) -> Garbage:
        """What the reference does at server start (`mfc serve`, `mfc prune`): under the
        exclusive lock, delete every blob no manifest references (older than
        `grace_seconds`), temp files of writers that are gone, and empty manifest folders.

        Builds and pulls hold the shared lock until their manifest is written, so their new
        blobs are never taken. The build cache's live entries keep their blobs (intermediates
        of a model in the store: `mfc cache prune` evicts those); orphan entries go with
        theirs. With `wait=False` a busy store raises `StoreBusyError` instead of waiting.
        """
        now = time.time()
        with self.exclusive_lock(self._busy(wait, on_wait)):
            temps = self.blobs.clean_stale_temps()
            refs = self.referenced_digests()
            swept = self.cache.sweep(refs)
            removed, freed = list(swept.removed), swept.freed
            keep = refs | swept.held
            for digest in self.blobs.digests():
                if digest in keep:
                    continue
                try:
                    st = self.blobs.path(digest).stat()
                except FileNotFoundError:
                    continue
                if now - st.st_mtime < grace_seconds:
                    continue
                if self.blobs.remove(digest):
                    removed.append(digest)
                    freed += st.st_size
            folders = self._remove_empty_manifest_dirs()
        return Garbage(removed, freed, temps, folders)

    def _remove_empty_manifest_dirs(self) -> int:
        removed = 0
        if not self.manifests_dir.is_dir():
            return removed
        for dirpath, _, _ in sorted(os.walk(self.manifests_dir), key=lambda w: -len(w[0])):
            if Path(dirpath) == self.manifests_dir:
                continue
            try:
                Path(dirpath).rmdir()
            except OSError:
                continue
            removed += 1
        return removed

    def verify(self, *, hashes: bool = True) -> list[str]:
        """Problems found: unreadable manifests, missing blobs, blobs whose bytes don't match."""
        problems = []
        checked: set[str] = set()
        for name in self.names():
            try:
                manifest = Manifest.parse(self.manifest_path(name).read_bytes())
            except (OSError, StoreError) as exc:
                problems.append(f"{name.display()}: {exc}")
                continue
            for layer in manifest.all_layers():
                if layer.digest in checked:
                    continue
                checked.add(layer.digest)
                try:
                    ok = (
                        self.blobs.verify(layer.digest)
                        if hashes
                        else self.blobs.exists(layer.digest)
                    )
                except StoreError as exc:
                    problems.append(f"{name.display()}: {exc}")
                    continue
                if not ok:
                    problems.append(f"{name.display()}: blob {layer.digest} is missing or corrupt")
        if self.blobs.dir.is_dir():
            for digest in self.blobs.digests():
                if hashes and digest not in checked and not self.blobs.verify(digest):
                    problems.append(f"blob {digest} does not match its digest")
        return problems
