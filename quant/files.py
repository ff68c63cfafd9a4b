"""Files mfc reads and writes outside the store.

Inputs must be regular files: a FIFO or a device would block a reader or never end.
Outputs (a quantized GGUF, a converted one, an export) go to a temp file beside their
target, named for the writing process, renamed over the target at the end, with the
mode a plain `open` gives (0666 less the umask). A writer killed before the rename leaves
its temp file; the next writer of the same target removes it once its process is gone.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def not_regular(path: Path) -> str | None:
    """Why `path` cannot be read as a file ("no such file", "not a regular file (a FIFO)"),
    or None for a regular file (symlinks are followed)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


_UMASK_LINE = re.compile(rb"^Umask:\s*([0-7]+)$", re.MULTILINE)


def file_mode() -> int:
    """The permission bits a new file gets under this process's umask (0o644 under 022)."""
    try:  # Linux says it without changing it (os.umask would race other threads)
        m = _UMASK_LINE.search(Path("/proc/self/status").read_bytes())
    except OSError:
        m = None
    if m is not None:
        umask = int(m.group(1), 8)
    else:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one existing file (hard links and symlinks included)."""
    try:
        return os.path.samestat(a.stat(), b.stat())
    except OSError:
        return False


def temp_path(target: Path) -> Path:
    """A new, empty temp file beside `target`: `.<name>.<pid>.<random>.tmp`, mode per umask."""
    while True:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files of `target` (see `temp_path`; older writers' `.<name>.<pid>.tmp`
    too) whose writing process is no longer running; returns what was removed."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.([0-9]+)(?:\.[0-9a-f]+)?\.tmp")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or pid_alive(int(m.group(1))) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            Path(entry.path).unlink()
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
