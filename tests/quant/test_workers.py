"""The worker processes of a quantization: started by a fork server, stopped on demand;
or, for a one-shot command, a team forked from the caller."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from quant_reference import reference, sha256_file

from fixtures.tiny_gguf import write_tiny_model
from quant import QuantError, quantize_file
from quant.fork_server import stop_fork_server
from quant.pipeline import forked_workers
from quant.team import run_team


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


def test_stop_fork_server_without_one_imports_nothing() -> None:
    """A process that never made a pool (a one-shot command: a team, no fork server) stops
    none, without importing multiprocessing's fork server module (~12 ms of its exit)."""
    code = (
        "import sys\n"
        "from quant.fork_server import stop_fork_server\n"
        "stop_fork_server()\n"
        "print(sorted(m for m in sys.modules if m.startswith('multiprocessing')))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- the team of a one-shot command (`quant.team`) ------------------------------------------


def test_team_runs_every_job_once_and_reports_it(tmp_path: Path) -> None:
    log = tmp_path / "ran"
    caller = os.getpid()

    def run(i: int) -> None:
        with log.open("a") as fh:  # one short append per job: whole lines
            fh.write(f"{i} {os.getpid()}\n")

    finished: list[int] = []
    before = children(caller)  # a fork server an earlier test started, say
    run_team(300, run, 3, finished.append)
    ran = [line.split() for line in log.read_text().splitlines()]
    assert sorted(int(i) for i, _ in ran) == list(range(300))
    assert sorted(finished) == list(range(300))
    assert {int(pid) for _, pid in ran} - {caller}  # forked members took some
    assert children(caller) == before  # and were waited for


def test_team_raises_a_workers_error_with_its_details() -> None:
    caller = os.getpid()

    def run(i: int) -> None:
        if os.getpid() != caller:
            raise QuantError(f"bad tensor {i}", tensor=f"t{i}", hint="fix it")
        time.sleep(0.01)  # leave the forked member jobs to fail on

    before = children(caller)
    with pytest.raises(QuantError, match="bad tensor") as info:
        run_team(50, run, 2, lambda i: None)
    assert info.value.tensor is not None and info.value.tensor.startswith("t")
    assert info.value.hint == "fix it"
    assert children(caller) == before


def test_team_raises_a_workers_os_error_as_such() -> None:
    """A full disk in a worker is an OSError in the caller (which `quantize_file` turns
    into `cannot write ...`), not a generic failure."""
    caller = os.getpid()

    def run(i: int) -> None:
        if os.getpid() != caller:
            raise OSError(errno.ENOSPC, "No space left on device")
        time.sleep(0.01)

    with pytest.raises(OSError, match="No space left") as info:
        run_team(50, run, 2, lambda i: None)
    assert info.value.errno == errno.ENOSPC


def test_team_reports_a_killed_worker() -> None:
    caller = os.getpid()

    def run(i: int) -> None:
        if os.getpid() != caller:
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer, say
        time.sleep(0.01)

    before = children(caller)
    with pytest.raises(QuantError, match="a quantize worker process died"):
        run_team(50, run, 2, lambda i: None)
    assert children(caller) == before


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "Q2_K"])
def test_team_writes_llama_cpps_bytes(ftype: str, smollm2_f32_2304: Path, tmp_path: Path) -> None:
    """`mfc quantize`'s way (a team forked from the caller, no tensor cache): the bytes of
    `llama_model_quantize`, whichever member did which chunk."""
    out = tmp_path / "out.gguf"
    with forked_workers():
        quantize_file(smollm2_f32_2304, out, ftype, threads=2)
    assert sha256_file(out) == reference(smollm2_f32_2304, ftype).sha256
