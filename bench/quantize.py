"""mfc's quantizer against llama.cpp's on the re-shaped SmolLM2-135M (F32, rows of 2304).

For each file type: the wall-clock seconds of the whole `mfc quantize IN OUT TYPE --threads 2`
command (interpreter start-up, imports and worker start-up included), llama.cpp's seconds in
the same run (the `llama_cpp.llama_model_quantize` call alone, nthread=2), their ratio (the
figure the targets are for), our peak RSS (the whole process tree, sampled) against the
input size, and whether the outputs are byte-identical. Every run writes a new output file
(the previous run's outputs are deleted first, outside the timings). Also the CPU seconds
(user + sys) of each side's whole process tree, start-up included, and their ratio: on a
shared machine (CI, other jobs) wall time says little, CPU time still compares the work done.

    .venv/bin/python bench/quantize.py [--types q8_0,q4_0] [--repeat 3] [--cpu]

`--cpu` ranks the runs of each side by CPU time instead of wall time (for a loaded machine).

The project's sources are byte-compiled first (`__pycache__`, git-ignored), as an installed
package is: where the environment sets PYTHONDONTWRITEBYTECODE, a source checkout would
otherwise recompile mfc's modules on every command (~0.1 s), which no installed copy does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
MODEL = CACHE / "models" / "smollm2-f32" / "SmolLM2-135M-F32-2304.gguf"
TYPES = (
    "q8_0",
    "q4_0",
    "q4_K_M",
    "q6_K",
    "q2_K",
    "iq4_NL",
    "iq4_XS",
    "iq3_XS",
    "iq3_XXS",
    "iq2_M",
    "iq2_XS",
    "iq2_XXS",
)
#: the file types llama.cpp refuses without an importance matrix: both sides get this one
IMATRIX = MODEL.parent / "smollm2-2304.imatrix.gguf"
NEEDS_IMATRIX = {"iq3_XS", "iq3_XXS", "iq2_M", "iq2_S", "iq2_XS", "iq2_XXS"}
#: wall ratio (whole mfc command / llama.cpp's call) to reach; the i-quants: 1.5
TARGETS = {"q8_0": 1.0, "q4_0": 1.0, "q4_K_M": 1.0, "q6_K": 1.0, "q2_K": 1.0}

OURS = """
import sys
from toolchain.cli import main
from quant.fork_server import stop_fork_server
if __name__ == "__main__":
    sys.argv[0] = "mfc"
    *files, imatrix = sys.argv[1:]
    try:
        main(["quantize", *files, "--threads", "2",
              *(["--imatrix", imatrix] if imatrix else [])])
    finally:
        stop_fork_server()  # if one ran: reaped, so its workers' CPU time counts
"""
LLAMA = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
from quant_reference import llama_quantize
import quant
if __name__ == "__main__":
    t = time.perf_counter()
    im = quant.load_imatrix(sys.argv[5]).entries if sys.argv[5] else None
    ok = llama_quantize(sys.argv[1], sys.argv[2], quant.file_type(sys.argv[3]).id, nthread=2,
                        imatrix=im)
    print(json.dumps({"seconds": time.perf_counter() - t, "ok": ok}))
"""


def _tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:"))
            total += int(rss) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def compile_sources() -> None:
    """Byte-compile the project's sources beside them, where both sides then find them."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "toolchain", "quant", "grammar", "fixtures"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run(script: str, *args: str) -> tuple[dict[str, object], int, float]:
    """Run a side in a subprocess: its JSON result (or, with no JSON line, the wall seconds
    of the whole subprocess), the peak RSS of its process tree and the CPU seconds of the
    whole tree (interpreter start-up included)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"benchmark run failed ({proc.returncode}): {' '.join(args)}")
    last = out.strip().splitlines()[-1:] if out.strip() else []
    result = json.loads(last[0]) if last and last[0].startswith("{") else {"seconds": seconds}
    return result, peak[0], _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per side; the best counts (one run is ~10%% noisy here)",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="pick each side's best run by CPU time, not wall time"
    )
    args = parser.parse_args()
    if not MODEL.exists():
        raise SystemExit(f"{MODEL} is missing: run `make fixtures`")
    size = MODEL.stat().st_size
    with MODEL.open("rb") as fh:  # warm the page cache for both sides
        while fh.read(64 << 20):
            pass
    print(f"input: {MODEL.name}, {size / 2**20:.0f} MiB, {os.cpu_count()} cores, 2 threads each")
    print(
        f"{'type':8} {'mfc s':>8} {'llama s':>8} {'ratio':>6} {'target':>6} "
        f"{'mfc cpu':>8} {'llama cpu':>9} {'cpu ratio':>9} {'peak RSS MiB':>12} {'limit':>6} "
        f"{'same bytes':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        compile_sources()
        for ftype in args.types.split(","):
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            peak = 0
            a, b = Path(tmp) / "mfc.gguf", Path(tmp) / "llama.gguf"
            im = str(IMATRIX) if ftype in NEEDS_IMATRIX else ""
            for _ in range(args.repeat):
                # each run writes a new file, as a user's first quantize does: writing over
                # the last run's output costs mfc's atomic rename ext4's flush of the new
                # data (33-76 ms on this disk) and llama.cpp's truncating open 8-24 ms
                a.unlink(missing_ok=True)
                b.unlink(missing_ok=True)
                res, rss, cpu = run(LLAMA, str(MODEL), str(b), ftype, str(ROOT / "fixtures"), im)
                theirs.append((float(res["seconds"]), cpu))  # type: ignore[arg-type]
                res, rss, cpu = run(OURS, str(MODEL), str(a), ftype, im)
                ours.append((float(res["seconds"]), cpu))  # type: ignore[arg-type]
                peak = max(peak, rss)
            same = a.read_bytes() == b.read_bytes()
            key = 1 if args.cpu else 0
            (wall, cpu_ours), (wall_theirs, cpu_theirs) = (
                min(side, key=lambda run: run[key]) for side in (ours, theirs)
            )
            target = TARGETS.get(ftype, 1.5)
            print(
                f"{ftype:8} {wall:8.2f} {wall_theirs:8.2f} {wall / wall_theirs:6.2f} "
                f"{target:6.1f} {cpu_ours:8.2f} {cpu_theirs:9.2f} "
                f"{cpu_ours / cpu_theirs:9.2f} {peak / 2**20:12.0f} "
                f"{(size + (512 << 20)) / 2**20:6.0f} {same!s:>10}",
                flush=True,
            )


if __name__ == "__main__":
    main()
