# ruff: noqa: E501  # noqa: RUF100
"""Render time per call of the llama3 template with 10 messages and a 5-tool list.

Target: < 200 us per call after parse (parse results and compiled templates are cached).
Prints the best wall-clock time of several runs, their median and the process CPU time per
call (the steadier number when other work shares the machine), and, when Go >= 1.23 is
installed, the reference's text/template on the same data for a ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolchain.prompt import named_template, parse_prompt_template, render_prompt

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}]
for i in range(4):
    MESSAGES.append({"role": "user", "content": f"Question {i}: what is the weather in city {i}?"})
    MESSAGES.append({"role": "assistant", "content": f"Answer {i}: it is sunny, {20 + i} degrees."})
MESSAGES.append({"role": "user", "content": "And tomorrow?"})
TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "description": f"Tool number {i}",
     "parameters": {"type": "object", "required": ["city"], "properties": {
         "city": {"type": "string", "description": "City name"},
         "days": {"type": "integer", "description": "Days ahead"},
         "unit": {"type": "string", "enum": ["c", "f"]}}}}}
    for i in range(5)
]  # fmt: skip


def main() -> None:
    source = named_template("llama3-instruct").template
    assert len(MESSAGES) == 10
    pt = parse_prompt_template(source)
    render_prompt(pt, messages=MESSAGES, tools=TOOLS)  # warm up (compiles the template)
    n, repeats = 500, 7
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            render_prompt(pt, messages=MESSAGES, tools=TOOLS)
        wall.append((time.perf_counter() - w0) / n * 1e6)
        cpu.append((time.process_time() - c0) / n * 1e6)
    per_call = min(wall)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"template render (llama3, 10 messages, 5 tools): {per_call:.0f} us/call "
        f"(best of {repeats}; median {statistics.median(wall):.0f}; CPU {min(cpu):.0f}) "
        f"(target < 200 us; load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    go_us = _go_reference(source, 2000)
    if go_us:
        print(
            f"Go text/template (reference engine): {go_us:.0f} us/call, ratio {per_call / go_us:.1f}x"
        )


def _go_reference(source: str, n: int) -> float | None:
    try:
        from tests.oracle.go_oracle import GoOracle, build

        oracle = GoOracle(build())
    except (ImportError, RuntimeError, subprocess.SubprocessError, OSError):
        return None
    req = {"messages": MESSAGES, "tools": TOOLS}
    oracle.run([("prompt", source, req)])
    t0 = time.perf_counter()
    oracle.run([("prompt", source, json.loads(json.dumps(req)))] * n)
    return (time.perf_counter() - t0) / n * 1e6


if __name__ == "__main__":
    main()
