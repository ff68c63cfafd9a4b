"""What a forked worker process sets up about itself, whoever forked it."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent exits, however the parent ends (a
    no-op elsewhere): workers never outlive the command or server that started them."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def keep_heap() -> None:
    """Kernels allocate arrays of a few MB per chunk; glibc would map and unmap each one
    (a page fault per 4 KB every time), so a quantizing process keeps them on the heap."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)
            libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20)
