"""`mfc serve --ray`: aggregate decode throughput through the ingress, 1 vs 2 engine replicas.

Starts a local Ray cluster of two nodes (head + worker, `--cpus` each), deploys the app over
a store holding SmolLM2-135M (Q4_1), and runs `--streams` greedy generations at once, first
with one engine replica and then with two (one per node). Each replica takes one request at
a time (`max_ongoing_requests` 1), so concurrent requests for the one model spill over to the
second replica. Prints total tokens/s for each, their ratio, and the core count: on a
2-core machine the replicas share the same cores and little gain is expected.

    .venv/bin/python bench/ray_serve.py [--streams 4] [--tokens 64] [--rounds 2] [--cpus 1]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve import build_store, prompt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def generate(url: str, text: str, tokens: int) -> tuple[int, str]:
    body = {
        "model": "smol",
        "prompt": text,
        "raw": True,
        "stream": False,
        "options": {"temperature": 0, "num_predict": tokens},
    }
    r = httpx.post(url + "/api/generate", json=body, timeout=600)
    r.raise_for_status()
    return int(r.json()["eval_count"]), r.headers["x-mfc-replica"]


def aggregate(url: str, streams: int, tokens: int, rounds: int) -> tuple[float, int]:
    """Median total tokens/s over `rounds` rounds of `streams` requests at once, and how
    many distinct replicas answered."""
    rates: list[float] = []
    replicas: set[str] = set()
    for r in range(rounds):
        counts = [0] * streams

        def one(i: int, r: int = r, counts: list[int] = counts) -> None:
            counts[i], replica = generate(url, prompt(100 * r + i), tokens)
            replicas.add(replica)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rates.append(sum(counts) / (time.perf_counter() - start))
    return statistics.median(rates), len(replicas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs of each Ray node")
    args = parser.parse_args()
    from ray import serve
    from ray.cluster_utils import Cluster

    from runtime import ray_serve
    from runtime.config import ServerConfig

    node = {"num_cpus": args.cpus, "object_store_memory": 100 << 20}
    results: dict[int, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_store(Path(tmp))
        cluster = Cluster()
        try:
            cluster.add_node(**node, include_dashboard=False)
            cluster.add_node(**node)
            cluster.wait_for_nodes()
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            config = ServerConfig(host="127.0.0.1", port=port, models_root=Path(tmp) / "store")
            for replicas in (1, 2):
                settings = ray_serve.RaySettings(
                    min_replicas=replicas,
                    max_replicas=replicas,
                    max_ongoing_requests=1,
                    replica_cpus=args.cpus,
                )
                ray_serve.deploy(config, settings, cluster.address)
                aggregate(url, replicas * 2, 4, 1)  # every replica loads the model first
                results[replicas] = aggregate(url, args.streams, args.tokens, args.rounds)
                serve.delete(ray_serve.APP_NAME)
        finally:
            try:
                ray_serve.shutdown()
            finally:
                cluster.shutdown()
    cores = os.cpu_count()
    for replicas, (rate, answered) in results.items():
        print(f"{replicas} replica(s): {rate:7.1f} tokens/s aggregate over {args.streams} "
              f"streams ({answered} replica(s) answered)")  # fmt: skip
    print(f"2 vs 1 replicas: x{results[2][0] / results[1][0]:.2f} on {cores} cores "
          f"(each node {args.cpus:g} Ray CPUs)")  # fmt: skip


if __name__ == "__main__":
    main()
