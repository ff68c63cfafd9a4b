"""The serving step of `make demo`: start `mfc serve`, ask one question over HTTP, stop it.

    python -m runtime.walkthrough MODEL "QUESTION"

Starts the server on a free loopback port (same store and environment as the caller),
posts the question to /api/chat, prints the answer as the NDJSON stream delivers it, then
stops the server (SIGTERM: models unload, the process exits).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model, question = argv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    mfc = Path(sys.executable).parent / "mfc"
    env = {**os.environ, "MFC_HOST": f"127.0.0.1:{port}"}
    print(f"$ mfc serve  # on {url}", flush=True)
    server = subprocess.Popen([str(mfc), "serve"], env=env)
    try:
        for _ in range(300):
            if server.poll() is not None:
                return 1
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        body = {"model": model, "messages": [{"role": "user", "content": question}]}
        print(f"$ POST {url}/api/chat {json.dumps(body)}", flush=True)
        with httpx.stream("POST", url + "/api/chat", json=body, timeout=600) as response:
            if response.status_code != 200:
                print(response.read().decode(), file=sys.stderr)
                return 1
            for line in response.iter_lines():
                item = json.loads(line)
                print(item["message"]["content"], end="", flush=True)
                if item["done"]:
                    rate = item["eval_count"] / (item["eval_duration"] / 1e9)
                    print(
                        f"\n[{item['eval_count']} tokens, {rate:.1f} tokens/s, "
                        f"done_reason={item['done_reason']}]"
                    )
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        print("$ server stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
