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
import socket
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

ROOT = Path(__file__).resolve().parent.parent
GGUF = (
    Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
    / "models"
    / "smollm2"
    / "SmolLM2-135M-Instruct.Q4_1.gguf"
)
COUNTING = ", ".join(str(i) for i in range(1, 40)) + ","


def prompt(trial: int) -> str:
    """A completion that keeps going (counting); the first word differs per trial so no
    side can reuse a cached prefix."""
    return f"Sequence {trial}: {COUNTING}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(store: Path, parallel: int) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "MFC_MODELS": str(store),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "MFC_HOST": f"127.0.0.1:{port}",
        "OLLAMA_NUM_PARALLEL": str(parallel),
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_CONTEXT_LENGTH": "2048",
    }
    mfc = Path(sys.executable).parent / "mfc"
    proc = subprocess.Popen(
        [str(mfc), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    with httpx.stream("POST", url + "/api/generate", json=body, timeout=600) as response:
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


def aggregate(url: str, streams: int, tokens: int, trial: int) -> float:
    """Total decoded tokens/s with `streams` generations running at once."""
    counts = [0] * streams

    def one(i: int) -> None:
        counts[i] = http_stream(url, prompt(1000 * trial + i), tokens)[2]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    from llama_cpp import Llama

    llm = Llama(str(GGUF), n_ctx=2048, flash_attn=True, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp))
        with server(Path(tmp) / "store", parallel=4) as url:
            http_stream(url, prompt(-1), 8)  # load the model
            inprocess_stream(llm, prompt(-1), 8)
            ttft_http, ttft_local, rate_http, rate_local = [], [], [], []
            for trial in range(args.trials):
                sides = [("local", inprocess_stream), ("http", None)]
                if trial % 2:
                    sides.reverse()
                for side, _ in sides:
                    if side == "local":
                        t, r, _n = inprocess_stream(llm, prompt(trial), args.tokens)
                        ttft_local.append(t)
                        rate_local.append(r)
                    else:
                        t, r, _n = http_stream(url, prompt(trial), args.tokens)
                        ttft_http.append(t)
                        rate_http.append(r)
            agg = {
                k: statistics.median(aggregate(url, k, args.tokens // 2, 100 + j) for j in range(3))
                for k in (1, 2, 4)
            }
    decode_h, decode_l = statistics.median(rate_http), statistics.median(rate_local)
    ttft_h, ttft_l = statistics.median(ttft_http), statistics.median(ttft_local)
    print(f"SmolLM2-135M Q4_1, {args.tokens} tokens, {args.trials} trials (medians)")
    print(
        f"decode tok/s  http {decode_h:7.1f}  in-process {decode_l:7.1f}  "
        f"ratio {decode_h / decode_l:.3f}  (target >= 0.95)"
    )
    print(
        f"TTFT ms       http {ttft_h * 1e3:7.1f}  in-process {ttft_l * 1e3:7.1f}  "
        f"overhead {(ttft_h - ttft_l) * 1e3:+.1f} ms  (target < 15 ms)"
    )
    print(
        "aggregate decode tok/s over HTTP: "
        + "  ".join(f"{k} stream{'s' if k > 1 else ''} {v:.1f}" for k, v in agg.items())
        + f"  (4 vs 1: x{agg[4] / agg[1]:.2f})"
    )


if __name__ == "__main__":
    main()
