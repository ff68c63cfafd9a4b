"""Run Go's own text/template (tests/oracle/gotemplate/main.go) on many cases per process;
build the other Go oracles (tests/oracle/gojson: encoding/json's floats).

The oracle is built once per source change into $MFC_CACHE/oracle/ with Go >= 1.23
(Debian bookworm-backports `golang-1.23-go`, installed by `make system-deps`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent / "gotemplate"
CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))
GO_CANDIDATES = ("/usr/lib/go-1.23/bin/go", "go")


@dataclass(frozen=True)
class Result:
    ok: bool
    output: bytes
    error: str


def find_go() -> str | None:
    """A Go toolchain >= 1.23 (else None)."""
    for cand in GO_CANDIDATES:
        path = shutil.which(cand)
        if not path:
            continue
        try:
            out = subprocess.run(  # noqa: PLW1510
                [path, "version"], capture_output=True, text=True, timeout=60
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"go(\d+)\.(\d+)", out)
        if m and (int(m.group(1)), int(m.group(2))) >= (1, 23):
            return path
    return None


def build(src: Path = SRC) -> Path:
    """Build (or reuse) the Go program in `src` (default: the text/template oracle); raises
    RuntimeError when no Go >= 1.23 exists."""
    go = find_go()
    if go is None:
        raise RuntimeError("Go >= 1.23 not found: run `make system-deps` (golang-1.23-go)")
    digest = hashlib.sha256()
    for f in sorted(src.iterdir()):
        if f.suffix in (".go", ".mod"):
            digest.update(f.name.encode() + f.read_bytes())
    out_dir = CACHE / "oracle"
    binary = out_dir / f"{src.name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=mod",
        CGO_ENABLED="0",
        GOCACHE=str(CACHE / "go-build"),
        GOPATH=str(CACHE / "gopath"),
    )
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_bin = Path(tmp) / "oracle"
        subprocess.run(
            [go, "build", "-o", str(tmp_bin), "."],
            cwd=src,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        os.replace(tmp_bin, binary)  # noqa: PTH105
    return binary


class GoOracle:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, cases: list[tuple[str, str, Any]]) -> list[Result]:
        """Run (mode, template, data) cases in one process; results in the same order."""
        lines = [
            json.dumps({"id": i, "mode": mode, "template": tmpl, "data": data})
            for i, (mode, tmpl, data) in enumerate(cases)
        ]
        proc = subprocess.run(
            [str(self.binary)],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        results: list[Result | None] = [None] * len(cases)
        for line in proc.stdout.splitlines():
            r = json.loads(line)
            results[r["id"]] = Result(
                r["ok"], base64.b64decode(r.get("output", "")), r.get("error", "")
            )
        assert all(r is not None for r in results), proc.stderr
        return [r for r in results if r is not None]
