"""Default threads: one per physical performance core, as Ollama and llama.cpp choose."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import cpu


def fake_sysfs(root: Path, siblings: dict[int, str]) -> Path:
    for n, text in siblings.items():
        topo = root / f"cpu{n}" / "topology"
        topo.mkdir(parents=True)
        (topo / "thread_siblings_list").write_text(text + "\n")
    return root


def test_parse_cpu_list() -> None:
    assert cpu.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert cpu.parse_cpu_list("") == set()


def test_hyperthreads_count_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 cores with 2 hyper-threads each: CPUs n and n+4 share a core
    sysfs = fake_sysfs(tmp_path, {n: f"{n % 4},{n % 4 + 4}" for n in range(8)})
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: set(range(8)))
    assert cpu.physical_cores(sysfs, tmp_path / "none") == 4
    # taskset to the two threads of core 0: one core
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: {0, 4})
    assert cpu.physical_cores(sysfs, tmp_path / "none") == 1


def test_efficiency_cores_are_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a hybrid part: CPUs 0-3 are two hyper-threaded P-cores, 4-7 four E-cores
    siblings = {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3", 4: "4", 5: "5", 6: "6", 7: "7"}
    sysfs = fake_sysfs(tmp_path / "sys", siblings)
    atom = tmp_path / "atom"
    atom.write_text("4-7\n")
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: set(range(8)))
    assert cpu.physical_cores(sysfs, atom) == 2
    # pinned to E-cores only: those are what there is
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: {5, 6})
    assert cpu.physical_cores(sysfs, atom) == 2


def test_unreadable_topology_counts_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: {0, 1, 2})
    assert cpu.physical_cores(tmp_path, tmp_path / "none") == 3


def test_this_machine_has_at_least_one_core() -> None:
    assert 1 <= cpu.default_threads() <= len(cpu.allowed_cpus())
