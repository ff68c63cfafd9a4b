"""How many threads llama.cpp gets when nothing says otherwise: the physical cores.

The reference (Ollama's `GetOptimalThreadCount`, llama.cpp's `cpu_get_num_math`) runs one
thread per physical performance core for decoding and for prompts alike: a second
hyper-thread on a core only competes for its vector units, and efficiency cores hold the
others back at every barrier. `num_thread` and `MFC_NUM_THREADS` override it.
"""

from __future__ import annotations

import os
from pathlib import Path

SYSFS_CPU = Path("/sys/devices/system/cpu")
#: the CPUs of an Intel hybrid part's efficiency cores (absent elsewhere)
EFFICIENCY_CPUS = Path("/sys/devices/cpu_atom/cpus")


def parse_cpu_list(text: str) -> set[int]:
    """A sysfs CPU list (`0-3,8,10-11`) as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a cgroup)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(root: Path = SYSFS_CPU, efficiency: Path = EFFICIENCY_CPUS) -> int:
    """Physical performance cores among the allowed CPUs (the logical CPU count where the
    topology can't be read)."""
    cpus = allowed_cpus()
    try:
        slow = parse_cpu_list(efficiency.read_text()) if efficiency.exists() else set()
    except (OSError, ValueError):
        slow = set()
    if cpus - slow:
        cpus -= slow
    cores: set[str] = set()
    for cpu in cpus:
        try:
            siblings = root / f"cpu{cpu}" / "topology" / "thread_siblings_list"
            cores.add(siblings.read_text().strip())
        except OSError:
            return max(len(cpus), 1)
    return max(len(cores), 1)


def default_threads() -> int:
    """Threads for decoding and for prompt processing when neither option nor env sets them."""
    return physical_cores()
