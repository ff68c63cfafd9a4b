"""The embedding rows of bench/serve.py: `/api/embed` against `Llama.embed` and
sentence-transformers in-process, all-MiniLM-L6-v2 F16 on both sides.

Besides wall time it reads the server process's CPU time (/proc) and the in-process
sides' (`time.process_time`), which a machine busy with other work inflates far less.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

WORDS = (
    "the a model server request answer token batch vector network quiet river mountain "
    "library window garden yellow engine careful bright summer thought market letter station "
    "science history music number question system people problem reason"
)
#: seconds between the one-text sides: llama.cpp's OpenMP threads spin after a pass
#: (libgomp's default, ~7-10 ms of a core after `Llama.embed` of one text, the server's
#: after its pass), and a side timed meanwhile shares the 2 cores with that spinning.
#: Twice this plus a trial's other calls stays under the server's POOL_LINGER (50 ms), so
#: its pool is kept between its requests as between back-to-back ones.
SETTLE = 0.015
Local = Callable[[Callable[[], Any]], Any]
Add = Callable[[str, float], None]
Row = tuple[str, str, str, float | str, str]


def texts_of(n: int, words: int, seed: int = 7) -> list[str]:
    """`n` texts of `words` words (about that many MiniLM tokens)."""
    rng = random.Random(seed)
    vocabulary = WORDS.split()
    return [" ".join(rng.choice(vocabulary) for _ in range(words)) for _ in range(n)]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of `fn()`."""
    cpu = time.process_time()
    wall = timed(fn)
    return wall, time.process_time() - cpu


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


class EmbedBench:
    """One server's `minilm` model and the in-process sides on the same GGUF."""

    def __init__(
        self, client: httpx.Client, url: str, pid: int, gguf: str, *, st_dir: str, texts: int
    ) -> None:
        from llama_cpp import Llama
        from sentence_transformers import SentenceTransformer

        self.client, self.url, self.pid = client, url, pid
        self.llama = Llama(gguf, embedding=True, verbose=False)
        self.llama_one = Llama(gguf, embedding=True, n_threads=1, n_threads_batch=1,
                               verbose=False)  # fmt: skip
        self.st = SentenceTransformer(st_dir, device="cpu")
        self.batch = texts_of(texts, 95)
        self.one = texts_of(1, 12, seed=1)
        self.singles = texts_of(64, 95, seed=3)
        self.tokens = sum(len(self.llama.tokenize(t.encode())) for t in self.batch)
        self.tokens64 = sum(len(self.llama.tokenize(t.encode())) for t in self.singles)

    def http(self, texts: list[str], threads: int = 0) -> int:
        body = {"model": "minilm", "input": texts, "options": {"num_thread": threads or None}}
        response = self.client.post(self.url + "/api/embed", json=body)
        response.raise_for_status()
        return int(response.json()["prompt_eval_count"])

    def server_timed(self, fn: Callable[[], Any]) -> tuple[float, float]:
        """(wall seconds, server CPU seconds) of `fn()`."""
        cpu = process_cpu(self.pid)
        wall = timed(fn)
        return wall, process_cpu(self.pid) - cpu

    def warm(self, local: Local, threads: int = 0) -> None:
        """Load the server's model (with `threads`) and warm every side."""
        self.http(self.one, threads)
        self.http(self.batch[:8], threads)
        local(lambda: self.llama.embed(self.one))
        local(lambda: self.llama_one.embed(self.one))
        local(lambda: self.st.encode(self.one))

    def trial(self, local: Local, add: Add) -> None:
        """One interleaved trial at defaults: single texts, the batch, 64 concurrent."""
        for _ in range(5):
            time.sleep(SETTLE)
            wall, cpu = self.server_timed(lambda: self.http(self.one))
            add("embed1_http", wall)
            add("embed1_http_cpu", cpu)
            time.sleep(SETTLE)
            wall, cpu = local(lambda: cpu_timed(lambda: self.llama.embed(self.one)))
            add("embed1_local", wall)
            add("embed1_local_cpu", cpu)
            add("version_http", timed(lambda: self.client.get(self.url + "/api/version")))
        sides: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("http", lambda: self.server_timed(lambda: self.http(self.batch))),
            ("llama", lambda: local(lambda: cpu_timed(lambda: self.llama.embed(self.batch)))),
            ("st", lambda: local(lambda: cpu_timed(lambda: self.st.encode(self.batch)))),
        ]
        random.shuffle(sides)
        for name, run in sides:
            wall, cpu = run()
            add(f"batch_{name}", wall)
            add(f"batch_{name}_cpu", cpu)
        add("one64", timed(lambda: self.http(self.singles)))
        with ThreadPoolExecutor(64) as pool:
            add("conc64", timed(lambda: list(pool.map(lambda t: self.http([t]), self.singles))))

    def trial_one_thread(self, local: Local, add: Add) -> None:
        """One text with one thread on both sides (the server reloads the model for it)."""
        for _ in range(5):
            time.sleep(SETTLE)
            add("embed1_http1", timed(lambda: self.http(self.one, threads=1)))
            time.sleep(SETTLE)
            add("embed1_one", local(lambda: timed(lambda: self.llama_one.embed(self.one))))

    def rows(self, res: dict[str, list[float]], texts: int) -> list[Row]:
        med = {k: statistics.median(v) for k, v in res.items()}
        rows: list[Row] = [
            ("embed 1 text, MiniLM, defaults (ms)", f"http {median_ms(res['embed1_http']):.1f}",
             f"Llama.embed {median_ms(res['embed1_local']):.1f}",
             f"{median_ms(res['embed1_http']) - median_ms(res['embed1_local']):+.1f} ms",
             "<= 3 ms"),
            ("  CPU per embed of 1 text (ms)", f"server {median_ms(res['embed1_http_cpu']):.1f}",
             f"in-process {median_ms(res['embed1_local_cpu']):.1f}", "", ""),
        ]  # fmt: skip
        if "embed1_http1" in res:
            rows.append(
                ("embed 1 text, MiniLM, 1 thread (ms)",
                 f"http {median_ms(res['embed1_http1']):.1f}",
                 f"Llama.embed {median_ms(res['embed1_one']):.1f}",
                 f"{median_ms(res['embed1_http1']) - median_ms(res['embed1_one']):+.1f} ms",
                 "<= 3 ms"))  # fmt: skip
        http = self.tokens / med["batch_http"]
        rows += [
            ("GET /api/version (ms)", f"http {median_ms(res['version_http']):.1f}", "", "", ""),
            (f"embed {texts} texts, tok/s", f"http {http:.0f}",
             f"sentence-transformers {self.tokens / med['batch_st']:.0f}",
             med["batch_st"] / med["batch_http"], ">= 1.0"),
            (f"embed {texts} texts, tok/s", f"http {http:.0f}",
             f"Llama.embed {self.tokens / med['batch_llama']:.0f}",
             med["batch_llama"] / med["batch_http"], ""),
            (f"embed {texts} texts, tok per CPU-s",
             f"server {self.tokens / med['batch_http_cpu']:.0f}",
             f"sentence-transformers {self.tokens / med['batch_st_cpu']:.0f}",
             med["batch_st_cpu"] / med["batch_http_cpu"], ""),
            ("64 one-text requests vs 1 request, tok/s",
             f"concurrent {self.tokens64 / med['conc64']:.0f}",
             f"batched {self.tokens64 / med['one64']:.0f}", med["one64"] / med["conc64"], ">= 0.6"),
        ]  # fmt: skip
        return rows
