"""The OpenMP thread pool llama.cpp's CPU backend leaves behind on a thread.

llama-cpp-python's CPU backend is built with OpenMP (GNU libgomp). A graph computed with
more than one thread runs an OpenMP team, and libgomp keeps that team's extra threads in a
pool owned by the calling thread until that thread exits. libgomp's barriers spin before
they sleep, but only briefly (a throttled spin count) whenever the threads it manages, in
every pool of the process, idle pooled ones included, outnumber the CPUs. So a pool left
on an embedding worker beside a chat model's engine thread (2 + 1 threads on 2 CPUs) made
every barrier of that model's decode sleep: ~65 instead of ~105 tokens/s on 2 cores, with
~880 voluntary context switches per token instead of ~1, for as long as both stayed
loaded. `release_thread_pool` frees the calling thread's pool, which brings the count
back down. Without libgomp in the process (a build without OpenMP) it does nothing.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

#: omp_pause_soft: the calling thread's pool threads exit; the next team starts new ones
OMP_PAUSE_SOFT = 1

_lock = threading.Lock()
_state: dict[str, ctypes.CDLL | None] = {}


def libgomp() -> ctypes.CDLL | None:
    """The libgomp this process has loaded (the one llama.cpp runs its teams with), or
    None when none is loaded (yet)."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        path = _loaded_path("libgomp.so")
        if path is None:
            return None  # not loaded yet: look again next time
        lib = ctypes.CDLL(path)  # the same handle: dlopen of a loaded library
        lib.omp_pause_resource_all.argtypes = [ctypes.c_int]
        lib.omp_pause_resource_all.restype = ctypes.c_int
        _state["lib"] = lib
        return lib


def _loaded_path(name: str) -> str | None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1]
        if Path(path).name.startswith(name):
            return path
    return None


def release_thread_pool() -> bool:
    """Free the calling thread's OpenMP pool (its threads exit; a later multi-threaded
    pass on this thread starts new ones, ~0.1 ms). True when libgomp did so."""
    lib = libgomp()
    return lib is not None and lib.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0
