"""One request must not hurt anyone else (issue 13): a live server under hostile load.

Four clients (processes of their own) send 50 MB bodies, pathological templates, huge and
malformed options, while the test probes `GET /api/version` 200 times.

The Done-when target is p99 < 50 ms (at most 2 of 200 probes slower). A probe's time is
mostly the machine's: on the shared 2-core machine the suite runs on (load average 15+),
the four clients, the decoder processes and the server compete for two cores, and a probe
waits for a core, not for the server. So the count over 50 ms is printed (`-s`) and
measured on a quiet machine by `bench/hostile_load.py`; what is asserted is the property
that makes the probes slow whatever the load: the longest time one thread of the server
kept the GIL (the event loop answers nothing meanwhile). The server's own probe
(`runtime/gilwatch.py`, `MFC_DEBUG_GIL_WATCH`) counts it in CPU time, not on the wall
clock, with the time it waited for a core taken off, so load barely moves it.
Before the fix one 50 MB body's `json.loads` in a thread held it 65 ms (51 of 200 probes
over 50 ms on a quiet machine); now no thread may hold it MAX_HOLD_MS (what is left:
a template's 16 MiB value, see there).

Not covered (README, "Server limits"): a 50 MB string a handler keeps (a prompt) becomes
one Python `str` in the server, a ~35 ms hold however it is built.

The server's peak RSS (VmHWM) must stay under RSS_BOUND, and each body decoder process's
under DECODER_RSS_BOUND (README, "Server limits").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

BODY = 50 << 20
PROBES = 200
TARGET = 0.050
#: the longest the server's GIL may be held by one thread, in CPU time. What is left is a
#: template building a value at the 16 MiB cap (a render thread: one 16 MB join, 8 ms on
#: its own, 10-26 ms seen at load average 22 with memory contended); before, one 50 MB
#: body held it 68 ms (load 8) to 113 ms (load 18)
MAX_HOLD_MS = 40.0
#: peak RSS of the server: its baseline (~75 MB) + two 50 MB bodies held as chunks while
#: the decoders take them + a 16 MiB template value or two + headroom (~280 MB seen)
RSS_BOUND = 512 << 20
#: peak RSS of one body decoder process: a 50 MB body, its text and its value (~250 MB seen)
DECODER_RSS_BOUND = 512 << 20

FAN_OUT = (
    '{{ define "t0" }}x{{ end }}'
    + "".join(
        f'{{{{ define "t{i}" }}}}{{{{ template "t{i - 1}" . }}}}{{{{ template "t{i - 1}" . }}}}'
        "{{ end }}"
        for i in range(1, 29)
    )
    + '{{ template "t28" . }}{{ range .Messages }}{{ end }}'
)
DOUBLING = '{{ $x := "ab" }}{{ range 64 }}{{ $x = printf "%s%s" $x $x }}{{ end }}{{ .Messages }}'


@pytest.fixture(scope="module")
def gil_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gil") / "watch.json"


@pytest.fixture(scope="module")
def url(
    start_server: Callable[..., AbstractContextManager[str]], gil_report: Path
) -> Iterator[str]:
    with start_server({"MFC_DEBUG_GIL_WATCH": str(gil_report)}) as base:
        yield base


def _server_pid() -> int:
    """The `mfc serve` child of this test process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"serve" in cmdline:
            return int(entry.name)
    raise AssertionError("no mfc serve child process")


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (the fork server and the body decoders under it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def _big_string_body() -> bytes:
    return json.dumps({"model": "demo", "junk": "x" * BODY}).encode()


def _dense_body() -> bytes:
    # 50 MB of small numbers: 12 M values, past the per-body value limit
    return b'{"model":"demo","junk":[' + b"1," * (BODY // 2) + b"1]}"


def _hostile_requests() -> list[list[tuple[str, bytes]]]:
    """What each of the four clients sends, round and round."""
    big, dense = _big_string_body(), _dense_body()
    render_only = {"model": "demo", "prompt": "hi", "_debug_render_only": True}
    templates = [
        ("/api/generate", json.dumps({**render_only, "template": t}).encode())
        for t in (FAN_OUT, DOUBLING)
    ]
    huge = {"num_batch": 2**40, "num_thread": 600, "num_ctx": 2**40}
    options = [
        ("/api/generate", b'{"model":"demo","prompt":"hi","options":{"temperature":1e999}}'),
        ("/api/generate", b'{"model":"demo","options":{"seed":' + b"9" * 5000 + b"}}"),
        ("/api/chat", b'{"model":"demo","messages":' + b"[" * 10_001 + b"]" * 10_001 + b"}"),
        ("/api/generate", json.dumps({**render_only, "options": huge}).encode()),
    ]
    return [
        [("/api/show", big)],
        [("/api/chat", dense), ("/api/copy", big)],
        templates,
        options,
    ]


#: one hostile client: its own process (the probes must not share a GIL with 50 MB uploads)
CLIENT = """
import sys, httpx
url, *pairs = sys.argv[1:]
requests = [(pairs[i], open(pairs[i + 1], "rb").read()) for i in range(0, len(pairs), 2)]
with httpx.Client(base_url=url, timeout=300) as http:
    i = 0
    while True:
        path, body = requests[i % len(requests)]
        response = http.post(path, content=body)
        print(response.status_code, path, response.text[:200].replace("\\n", " "), flush=True)
        i += 1
"""


def _probe(http: httpx.Client) -> float:
    start = time.perf_counter()
    response = http.get("/api/version")
    elapsed = time.perf_counter() - start
    assert response.status_code == 200
    return elapsed


def test_version_stays_answered_under_hostile_load(
    url: str, gil_report: Path, tmp_path: Path
) -> None:
    pid = _server_pid()
    base_rss = _status_kb(pid, "VmRSS")
    with httpx.Client(base_url=url, timeout=60) as http:
        idle = []
        for _ in range(60):
            idle.append(_probe(http))
            time.sleep(0.01)
        idle.sort()
    chosen = os.environ.get("HOSTILE_CLIENTS")
    clients = _hostile_requests()
    if chosen is not None:
        clients = [clients[int(i)] for i in chosen.split(",") if i]
    procs = []
    for n, requests in enumerate(clients):
        args = [url]
        for k, (path, body) in enumerate(requests):
            (tmp_path / f"{n}-{k}.json").write_bytes(body)
            args += [path, str(tmp_path / f"{n}-{k}.json")]
        log = (tmp_path / f"client-{n}.log").open("w")
        # niced: clients would be other machines, not the server's competitors for a core
        command = ["nice", "-n", "10", sys.executable, "-c", CLIENT, *args]
        procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    latencies: list[float] = []
    peak_rss = base_rss
    try:
        time.sleep(2.0)  # let the bodies start arriving
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(PROBES):
                latencies.append(_probe(http))
                peak_rss = max(peak_rss, _status_kb(pid, "VmRSS"))
                time.sleep(0.025)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
    hwm = _status_kb(pid, "VmHWM")
    decoders = {child: _status_kb(child, "VmHWM") for child in _descendants(pid)}
    time.sleep(0.5)
    gil = json.loads(gil_report.read_text())
    answers = [
        line for n in range(len(clients))
        for line in (tmp_path / f"client-{n}.log").read_text().splitlines()
        if line[:3].isdigit()
    ]  # fmt: skip
    statuses: dict[int, int] = {}
    for line in answers:
        statuses[int(line[:3])] = statuses.get(int(line[:3]), 0) + 1
    over_target = sum(1 for s in latencies if s > TARGET)
    ordered = sorted(latencies)
    idle_over = sum(1 for s in idle if s > TARGET)
    print(
        f"\nidle: {idle_over}/{len(idle)} probes > 50 ms, "
        f"p50 {idle[len(idle) // 2] * 1000:.1f} ms; "
        f"hostile load: {over_target}/{PROBES} probes > 50 ms; "
        f"p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, p99 {ordered[-3] * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms; RSS {base_rss / 1024:.0f} MB at start, peak "
        f"sampled {peak_rss / 1024:.0f} MB, VmHWM {hwm / 1024:.0f} MB; children's VmHWM "
        f"{sorted(kb // 1024 for kb in decoders.values())} MB; answers {statuses}; GIL {gil}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    # every hostile request was refused as a client error, none crashed the server
    assert not [line for line in answers if line.startswith("5")], answers
    if chosen is None:
        assert statuses.get(400, 0) > 4
    assert gil["samples"] > PROBES  # the probe ran all along
    assert gil["max_hold_ms"] < MAX_HOLD_MS, gil
    assert hwm * 1024 < RSS_BOUND
    assert all(kb * 1024 < DECODER_RSS_BOUND for kb in decoders.values()), decoders
