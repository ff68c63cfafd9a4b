"""Issue 13's hostile load on a quiet machine: `/api/version` p99 while 4 clients attack.

Runs tests/runtime/test_hostile_load.py (four client processes sending 50 MB bodies,
pathological templates and huge options to a live `mfc serve`, 200 probes) and prints its
figures: probes over 50 ms (the Done-when target: at most 2 of 200, p99 < 50 ms), p50/p99,
the longest GIL hold the server's own probe saw, and peak RSS of the server and of its body
decoder processes, with the load average before and after. The probe times are only
meaningful on an otherwise idle machine: read the load average next to them.

    PYTHONPATH=$PWD .venv/bin/python bench/hostile_load.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/runtime/test_hostile_load.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.runs):
        before = os.getloadavg()[0]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        figures = [line for line in result.stdout.splitlines() if line.startswith("idle:")]
        status = "passed" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"run {run + 1}: load average {before:.1f} before; {status}")
        for line in figures or result.stdout.splitlines()[-20:]:
            print("  " + line.replace("; ", "\n  "))


if __name__ == "__main__":
    main()
