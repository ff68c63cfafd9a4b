"""The worker processes of a quantization: started by a fork server, stopped on demand."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from fixtures.tiny_gguf import write_tiny_model
from quant import quantize_file
from quant.pipeline import stop_fork_server


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_stop_fork_server_reaps_it(tmp_path: Path) -> None:
    src = write_tiny_model(tmp_path / "f32.gguf", file_type=0, n_embd=64)
    stop_fork_server()  # one an earlier test of this session started
    before = set(children(os.getpid()))
    quantize_file(src, tmp_path / "q8.gguf", "q8_0", threads=2)
    helpers = set(children(os.getpid())) - before
    assert helpers  # the fork server (and multiprocessing's resource tracker, the first time)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop_fork_server()
    after = set(children(os.getpid()))
    assert len(helpers - after) == 1  # the fork server is gone and was waited for
    again = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert again.ru_utime + again.ru_stime > cpu.ru_utime + cpu.ru_stime  # its workers' time
    stop_fork_server()  # a no-op now
    quantize_file(src, tmp_path / "q8-again.gguf", "q8_0", threads=2)  # a new one starts
    stop_fork_server()
