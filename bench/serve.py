"""`mfc serve` against llama-cpp-python in-process, on SmolLM2-135M (Q4_1).

Prints, from medians over interleaved trials (the machine may be shared, so each trial
runs both sides back to back):

- decode tokens/s streamed over HTTP (/api/generate, NDJSON) vs the same greedy generation
  with llama-cpp-python's `Llama.create_completion(stream=True)` in this process, and the
  ratio (target >= 0.95);
- time to first token over HTTP minus in-process (target < 15 ms), same prompt length,
  never a cached prefix;
- aggregate decode tokens/s with 1, 2 and 4 concurrent streams (OLLAMA_NUM_PARALLEL=4).

Both sides use the same threads (llama-cpp-python's defaults: half the cores for decoding,
all for the prompt), flash attention on, a 2048-token context, greedy sampling.

    .venv/bin/python bench/serve.py [--tokens 128] [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.local_server import local_server

ROOT = Path(__file__).resolve().parent.parent
GGUF = (
    Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
    / "models"
    / "smollm2"
    / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
COUNTING = ", ".join(str(i) for i in range(1, 40)) + ","
#: one client for every request, as applications keep theirs (a new httpx client costs
#: tens of ms for its TLS context alone, which is not the server's time)
CLIENT = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=8))


def prompt(trial: int) -> str:
    """A completion that keeps going (counting); the first word differs per trial so no
    side can reuse a cached prefix."""
    return f"Sequence {trial}: {COUNTING}"


@contextmanager
def server(store: Path, parallel: int) -> Iterator[str]:
    env = {
        "MFC_MODELS": str(store),
        "OLLAMA_NUM_PARALLEL": str(parallel),
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_CONTEXT_LENGTH": "2048",
    }
    with local_server(env, output=subprocess.DEVNULL, stop_timeout=30) as url:
        yield url


def build_store(root: Path) -> None:
    folder = root / "src"
    folder.mkdir()
    (folder / "Modelfile").write_text(f'FROM {GGUF}\nTEMPLATE "{{{{ .Prompt }}}}"\n')
    mfc = Path(sys.executable).parent / "mfc"
    subprocess.run(
        [str(mfc), "build", str(folder / "Modelfile"), "-t", "smol", "--json"],
        env={**os.environ, "MFC_MODELS": str(root / "store")},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def http_stream(url: str, text: str, tokens: int) -> tuple[float, float, int]:
    """(seconds to the first token, decode tokens/s after it, tokens) over HTTP."""
    body = {
        "model": "smol",
        "prompt": text,
        "raw": True,
        "stream": True,
        "options": {"temperature": 0, "num_predict": tokens},
    }
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    with CLIENT.stream("POST", url + "/api/generate", json=body) as response:
        for line in response.iter_lines():
            item = json.loads(line)
            now = time.perf_counter()
            if item.get("done"):
                count = int(item["eval_count"])
                break
            if not first:
                first = now
            last = now
    return first - start, (count - 1) / (last - first), count


def inprocess_stream(llm: object, text: str, tokens: int) -> tuple[float, float, int]:
    """The same with llama-cpp-python's create_completion(stream=True)."""
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for _chunk in llm.create_completion(  # type: ignore[attr-defined]
        text, max_tokens=tokens, temperature=0.0, top_k=1, stream=True
    ):
        now = time.perf_counter()
        if not first:
            first = now
        last = now
        count += 1
    return first - start, (count - 1) / (last - first), count


def aggregate(url: str, streams: int, tokens: int) -> float:
    """Total decoded tokens/s with `streams` generations running at once. Each stream's
    prompt is already in a slot's cache (a warm-up round ran it), so this is decoding."""
    counts = [0] * streams

    def one(i: int) -> None:
        counts[i] = http_stream(url, prompt(1000 + i), tokens)[2]

    def round_() -> float:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.perf_counter() - start)

    round_()  # warm the slots' prompt caches
    return statistics.median(round_() for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    from llama_cpp import Llama

    llm = Llama(str(GGUF), n_ctx=2048, flash_attn=True, verbose=False)
    results: dict[str, list[float]] = {
        k: [] for k in ("cold_h", "cold_l", "warm_h", "warm_l", "rate_h", "rate_l")
    }
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp))
        with server(Path(tmp) / "store", parallel=4) as url:
            http_stream(url, prompt(-1), 8)  # load the model
            inprocess_stream(llm, prompt(-1), 8)
            for trial in range(args.trials):
                sides = [("l", llm), ("h", url)]
                if trial % 2:
                    sides.reverse()
                for side, target in sides:
                    run = inprocess_stream if side == "l" else http_stream
                    # cold: a prompt neither side has seen; warm: the same prompt again
                    cold, rate, _ = run(target, prompt(trial), args.tokens)  # type: ignore[arg-type]
                    for _ in range(5):
                        warm, _, _ = run(target, prompt(trial), 4)  # type: ignore[arg-type]
                        results[f"warm_{side}"].append(warm)
                    results[f"cold_{side}"].append(cold)
                    results[f"rate_{side}"].append(rate)
            agg = {k: aggregate(url, k, args.tokens // 2) for k in (1, 2, 4)}
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["rate_h"] / med["rate_l"]
    print(f"SmolLM2-135M Q4_1, {args.tokens} tokens, {args.trials} interleaved trials (medians)")
    print(
        f"decode tok/s      http {med['rate_h']:7.1f}  in-process {med['rate_l']:7.1f}  "
        f"ratio {ratio:.3f}  (target >= 0.95)"
    )
    for kind in ("warm", "cold"):
        h, loc = med[f"{kind}_h"] * 1e3, med[f"{kind}_l"] * 1e3
        what = "cached prompt" if kind == "warm" else "new prompt, full prefill"
        print(
            f"TTFT ms ({kind})    http {h:7.1f}  in-process {loc:7.1f}  "
            f"overhead {h - loc:+6.1f} ms  ({what}; target < 15 ms)"
        )
    print(
        "aggregate decode tok/s over HTTP: "
        + "  ".join(f"{k} stream{'s' if k > 1 else ''} {v:.1f}" for k, v in agg.items())
        + f"  (4 vs 1: x{agg[4] / agg[1]:.2f})"
    )


if __name__ == "__main__":
    main()
