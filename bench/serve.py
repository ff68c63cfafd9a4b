"""`mfc serve` against in-process llama-cpp-python and sentence-transformers, side by side.

One run, one server (OLLAMA_NUM_PARALLEL=8, default threads), two models: SmolLM2-135M
(Q4_1) for generation and all-MiniLM-L6-v2 (F16, converted by `mfc build`) for
embeddings. Every figure is a median over interleaved trials (each trial runs every side
back to back), so a machine shared with other work shifts both sides alike; read the
ratios, not the absolute numbers. Prints:

- decode tokens/s streamed over HTTP vs `Llama.create_completion(stream=True)` in this
  process, with each side's default threads, with the server's on both, and with one
  thread on both (`num_thread: 1`: the HTTP path's own cost, free of the scheduling noise
  two spinning llama.cpp threads meet on a busy machine);
- time to first token over HTTP minus in-process at one thread (a new prompt, and a
  cached prompt with two new tokens);
- one request's latency through a keep-alive client minus in-process: `/api/embed` of one
  text vs `Llama.embed` (defaults, and one thread), and `/api/version`;
- `/api/embed` throughput (one request with every text) vs sentence-transformers fp32 and
  `Llama.embed` on the same texts; 64 concurrent one-text requests vs one batched request;
- 8 concurrent chat streams: aggregate tokens/s, p50/p95/p99 TTFT and inter-token latency,
  against one stream's median inter-token latency.

`--only streams` runs just the last part (about a minute), with one server per
`--itl-budget` value (`MFC_ITL_BUDGET`; `default` leaves it unset), their rounds interleaved.

    .venv/bin/python bench/serve.py [--tokens 128] [--trials 5] [--texts 128] [--only embed]
    .venv/bin/python bench/serve.py --only streams --itl-budget off --itl-budget default
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve_embed import EmbedBench, Row
from fixtures.local_server import server_process
from runtime.cpu import default_threads

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc")) / "models"
SMOL = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = MODELS / "all-MiniLM-L6-v2"
COUNTING = ", ".join(str(i) for i in range(1, 40)) + ","
#: one pooled client for every request, as applications keep theirs
CLIENT = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))
#: the in-process sides run here, not on the main thread: with libgomp's default spinning,
#: llama.cpp called from a process's main thread with 2 threads on a busy 2-core machine
#: decodes at 1-2 tokens/s instead of ~20 (the server decodes on its engine thread)
LOCAL = ThreadPoolExecutor(1)


def local(fn: Callable[[], Any]) -> Any:
    """`fn()` on the in-process worker thread."""
    return LOCAL.submit(fn).result()


def prompt(trial: int) -> str:
    """A completion that keeps going (counting); its first word differs per trial so no side
    reuses a cached prefix."""
    return f"Sequence {trial}: {COUNTING}"


def build_store(root: Path, generation: bool = True, embed_weights: str = "f16") -> Path:
    """A store with `smol` (raw prompts), `chat` (the demo Modelfile) and `minilm` (only
    `minilm` without `generation`), whose weights are `embed_weights`."""
    mfc = Path(sys.executable).parent / "mfc"
    store = root / "store"
    models = {
        "smol": f'FROM {SMOL}\nTEMPLATE "{{{{ .Prompt }}}}"\n',
        "chat": (ROOT / "fixtures" / "modelfiles" / "demo" / "Modelfile").read_text(),
        "minilm": f"FROM {MINILM}\nQUANTIZE {embed_weights}\n",
    }
    for name, text in models.items():
        if not generation and name != "minilm":
            continue
        folder = root / name
        folder.mkdir()
        (folder / "Modelfile").write_text(text.replace("~/.cache/mfc/models", str(MODELS)))
        subprocess.run([str(mfc), "build", str(folder / "Modelfile"), "-t", name, "--json"],
                       env={**os.environ, "MFC_MODELS": str(store)}, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return store


def minilm_gguf(store: Path) -> str:
    from toolchain.store import Store
    from toolchain.store.model import load_model

    return str(load_model(Store(store), "minilm").model_path)


# --- generation ---------------------------------------------------------------------------


def http_stream(
    url: str, text: str, tokens: int, threads: int = 0
) -> tuple[float, float, list[float]]:
    """(seconds to the first token, decode tokens/s after it, chunk arrival times);
    `threads` > 0 asks for that `num_thread`."""
    options = {"temperature": 0, "num_predict": tokens, "num_thread": threads or None}
    body = {"model": "smol", "prompt": text, "raw": True, "stream": True, "options": options}
    start = time.perf_counter()
    times: list[float] = []
    count = 0
    with CLIENT.stream("POST", url + "/api/generate", json=body) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            if item.get("done"):
                count = int(item["eval_count"])
                break
            times.append(time.perf_counter())
    return times[0] - start, rate(count, times), times


def rate(count: int, times: list[float]) -> float:
    """Tokens/s after the first token (0 with fewer than two chunks)."""
    return (count - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def local_stream(llm: Any, text: str, tokens: int) -> tuple[float, float, list[float]]:
    start = time.perf_counter()
    times = []
    for _ in llm.create_completion(text, max_tokens=tokens, temperature=0.0, top_k=1,
                                   stream=True):  # fmt: skip
        times.append(time.perf_counter())
    return times[0] - start, rate(len(times), times), times


def chat_stream(url: str, question: str, tokens: int) -> tuple[float, list[float], int]:
    """(TTFT, gaps between chunks, tokens) of one streamed /api/chat."""
    body = {"model": "chat", "stream": True,
            "messages": [{"role": "user", "content": question}],
            "options": {"temperature": 0, "num_predict": tokens}}  # fmt: skip
    start = time.perf_counter()
    times: list[float] = []
    count = 0
    with CLIENT.stream("POST", url + "/api/chat", json=body) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            if item.get("done"):
                count = int(item.get("eval_count", 0))
                break
            times.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return times[0] - start, gaps, count


def streams(url: str, n: int, tokens: int, rounds: int, first: int = 0) -> dict[str, Any]:
    """`n` chat streams started together, `rounds` times: aggregate tokens/s, TTFTs, gaps."""
    ttfts: list[float] = []
    gaps: list[float] = []
    rates: list[float] = []
    for r in range(first, first + rounds):
        questions = [f"Story {r}-{i}: tell a long story about a lighthouse keeper." for i in
                     range(n)]  # fmt: skip
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda q: chat_stream(url, q, tokens), questions))
        rates.append(sum(c for _, _, c in results) / (time.perf_counter() - start))
        for ttft, g, _ in results:
            ttfts.append(ttft)
            gaps.extend(g)
    return {"rate": statistics.median(rates), "ttft": ttfts, "gaps": gaps}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def solo_gap(url: str, tokens: int) -> float:
    """One stream's median gap between chunks (two streams, one at a time)."""
    solo = [chat_stream(url, f"Solo {i}: tell a long story about a lighthouse keeper.", tokens)
            for i in range(2)]  # fmt: skip
    return statistics.median(g for _, gaps, _ in solo for g in gaps)


def stream_rows(label: str, many: dict[str, Any], solo: float, n: int) -> list[Row]:
    """The rows of `n` streams against one stream's median inter-token latency `solo`."""
    return [
        (f"{n} chat streams{label}, aggregate tok/s", f"{many['rate']:.1f}",
         f"1 stream {1 / solo:.1f}", many["rate"] * solo, ""),
        (f"{n} streams{label} TTFT p50/p95/p99 (ms)",
         "/".join(f"{pct(many['ttft'], q) * 1e3:.0f}" for q in (50, 95, 99)), "", "", ""),
        (f"{n} streams{label} inter-token p50/p95/p99 (ms)",
         "/".join(f"{pct(many['gaps'], q) * 1e3:.1f}" for q in (50, 95, 99)),
         f"1 stream p50 {solo * 1e3:.1f}", pct(many["gaps"], 99) / solo, "<= 3.0"),
    ]  # fmt: skip


def server_env(store: Path, parallel: int, budget: str = "default") -> dict[str, str]:
    env = {"MFC_MODELS": str(store), "OLLAMA_NUM_PARALLEL": str(parallel),
           "OLLAMA_CONTEXT_LENGTH": "2048", "OLLAMA_KEEP_ALIVE": "-1"}  # fmt: skip
    if budget != "default":
        env["MFC_ITL_BUDGET"] = budget
    return env


def only_streams(args: argparse.Namespace) -> list[Row]:
    """`--only streams`: one server per budget, their rounds of streams interleaved."""
    budgets = args.itl_budget or ["default"]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        store = build_store(Path(tmp))
        urls = {}
        for budget in budgets:
            env = server_env(store, args.streams, budget)
            server = server_process(env, output=subprocess.DEVNULL, stop_timeout=30)
            urls[budget] = stack.enter_context(server).url
            chat_stream(urls[budget], "Hi", 4)
        gaps = {b: solo_gap(urls[b], args.tokens) for b in budgets}
        rounds: dict[str, list[dict[str, Any]]] = {b: [] for b in budgets}
        for trial in range(max(args.trials // 2, 2)):
            for budget in random.Random(trial).sample(budgets, len(budgets)):
                rounds[budget].append(streams(urls[budget], args.streams, args.tokens, 1, trial))
    for budget in budgets:
        many = {"rate": statistics.median(r["rate"] for r in rounds[budget]),
                "ttft": [t for r in rounds[budget] for t in r["ttft"]],
                "gaps": [g for r in rounds[budget] for g in r["gaps"]]}  # fmt: skip
        rows += stream_rows(f" [{budget}]", many, gaps[budget], args.streams)
    return rows


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    load = os.getloadavg()[0]
    return (f"{model}, {os.cpu_count()} logical CPUs, {default_threads()} physical cores, "
            f"load average {load:.1f}; kernels {cpu_kernels()}")  # fmt: skip


def cpu_kernels() -> str:
    """The vector extensions llama.cpp's CPU backend was compiled for (the wheel is built
    for the CPU that built it), and torch's. They decide the embedding ratio: MiniLM F16,
    one thread each, tokens per CPU-second, on an AVX512_BF16 AMD EPYC: llama.cpp built
    for AVX-512 4,866 against sentence-transformers' 4,015 (1.21x), built for AVX2 alone
    3,418 against 4,320 (0.79x)."""
    import llama_cpp as lc
    import torch

    info = lc.llama_print_system_info().decode()
    wanted = ("AVX2", "F16C", "AVX512", "AVX512_BF16", "LLAMAFILE", "OPENMP")
    found = [name for name in wanted if f" {name} = 1 " in f" {info} "]
    ours = " ".join(found) or "no AVX2"
    return f"llama.cpp {ours}, torch {torch.backends.cpu.get_cpu_capability()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128, help="decoded tokens per trial")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--texts", type=int, default=128, help="texts (~100 tokens) to embed")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--embed-weights", choices=("f16", "bf16", "f32"), default="f16",
                        help="MiniLM's weight type, both sides (f16: Ollama's)")  # fmt: skip
    parser.add_argument("--only", choices=("all", "embed", "streams"), default="all",
                        help="embed/streams: those rows alone (about a minute)")  # fmt: skip
    parser.add_argument(
        "--itl-budget",
        action="append",
        metavar="FACTOR",
        help="the server's MFC_ITL_BUDGET (repeat with --only streams)",
    )
    args = parser.parse_args()
    from llama_cpp import Llama

    threads = default_threads()
    print(f"machine: {machine()}")
    if args.only == "streams":
        rows = only_streams(args)
        print(f"after: load average {os.getloadavg()[0]:.1f}; {args.tokens} tokens a stream")
        print_table(rows)
        return
    res: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        res.setdefault(key, []).append(value)

    generation = args.only == "all"
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), generation, args.embed_weights)
        env = server_env(store, args.streams, (args.itl_budget or ["default"])[0])
        if generation:
            llm_default = Llama(str(SMOL), n_ctx=2048, verbose=False)
            llm_same = Llama(str(SMOL), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                             verbose=False)  # fmt: skip
            llm_one = Llama(str(SMOL), n_ctx=2048, n_threads=1, n_threads_batch=1,
                            verbose=False)  # fmt: skip
        with server_process(env, output=subprocess.DEVNULL, stop_timeout=30) as server:
            url = server.url
            emb = EmbedBench(CLIENT, url, server.proc.pid, minilm_gguf(store),
                             st_dir=str(MINILM), texts=args.texts)  # fmt: skip
            emb.warm(local)
            if generation:
                http_stream(url, prompt(-1), 8)  # load the models, warm every side
                chat_stream(url, "Hi", 4)
                local(lambda: local_stream(llm_default, prompt(-1), 8))
                local(lambda: local_stream(llm_same, prompt(-1), 8))
                local(lambda: local_stream(llm_one, prompt(-1), 8))
            for trial in range(args.trials):
                if generation:
                    sides: list[tuple[str, Any]] = [
                        ("http", lambda t, n: http_stream(url, t, n)),
                        ("default", lambda t, n: local(lambda: local_stream(llm_default, t, n))),
                        ("same", lambda t, n: local(lambda: local_stream(llm_same, t, n))),
                    ]
                    random.Random(trial).shuffle(sides)
                    for side, run in sides:
                        _, rate, _ = run(prompt(trial), args.tokens)
                        add(f"rate_{side}", rate)
                emb.trial(local, add)
            # one thread on both sides: the HTTP path's own cost, without the thread
            # scheduling noise two spinning threads meet on a busy machine
            emb.warm(local, threads=1)  # reload with num_thread 1
            if generation:
                http_stream(url, prompt(-2), 4, threads=1)
            for trial in range(args.trials):
                if generation:
                    sides = [
                        ("http1", lambda t, n: http_stream(url, t, n, threads=1)),
                        ("one", lambda t, n: local(lambda: local_stream(llm_one, t, n))),
                    ]
                    random.Random(trial).shuffle(sides)
                    for side, run in sides:
                        cold, rate, _ = run(prompt(100 + trial), args.tokens)
                        add(f"rate_{side}", rate)
                        add(f"cold_{side}", cold)
                        for k in range(3):  # the prompt cached, two new tokens to evaluate
                            add(f"warm_{side}", run(prompt(100 + trial) + f" {40 + k},", 1)[0])
                emb.trial_one_thread(local, add)
            if generation:
                chat_stream(url, "Hi", 4)  # the chat runner, default threads again
                solo = solo_gap(url, args.tokens)
                many = streams(url, args.streams, args.tokens, max(args.trials // 2, 2))
    print(f"after: load average {os.getloadavg()[0]:.1f}; {args.trials} interleaved trials, "
          f"medians; server threads {threads} (physical cores)")  # fmt: skip
    rows = generation_rows(res, solo, many, threads, args.streams) if generation else []
    rows[5:5] = emb.rows(res, args.texts)
    print_table(rows)


def print_table(rows: list[Row]) -> None:
    print(f"| {'measure':44} | {'mfc serve':18} | {'reference':30} | {'ratio':>11} | target  |")
    print(f"|{'-' * 46}|{'-' * 20}|{'-' * 32}|{'-' * 13}|---------|")
    for name, ours, theirs, ratio, target in rows:
        shown = f"{ratio:.3f}" if isinstance(ratio, float) else ratio
        print(f"| {name:44} | {ours:18} | {theirs:30} | {shown:>11} | {target:7} |")


def generation_rows(
    res: dict[str, list[float]],
    solo: float,
    many: dict[str, Any],
    threads: int,
    n_streams: int,
) -> list[Row]:
    """The decode, TTFT and streams rows (the embedding rows go after the fifth)."""
    med = {k: statistics.median(v) for k, v in res.items()}
    return [
        ("decode tok/s, SmolLM2, defaults", f"http {med['rate_http']:.1f}",
         f"in-process {med['rate_default']:.1f}", med["rate_http"] / med["rate_default"],
         ">= 0.97"),
        (f"decode tok/s, SmolLM2, {threads} threads both", f"http {med['rate_http']:.1f}",
         f"in-process {med['rate_same']:.1f}", med["rate_http"] / med["rate_same"], ""),
        ("decode tok/s, SmolLM2, 1 thread both", f"http {med['rate_http1']:.1f}",
         f"in-process {med['rate_one']:.1f}", med["rate_http1"] / med["rate_one"], ""),
        ("TTFT, new prompt, 1 thread (ms)", f"http {med['cold_http1'] * 1e3:.1f}",
         f"in-process {med['cold_one'] * 1e3:.1f}",
         f"{(med['cold_http1'] - med['cold_one']) * 1e3:+.1f} ms", ""),
        ("TTFT, cached prompt, 1 thread (ms)", f"http {med['warm_http1'] * 1e3:.1f}",
         f"in-process {med['warm_one'] * 1e3:.1f}",
         f"{(med['warm_http1'] - med['warm_one']) * 1e3:+.1f} ms", "<= 3 ms"),
        *stream_rows("", many, solo, n_streams),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
