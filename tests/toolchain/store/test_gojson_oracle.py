"""Differential test: our Go-JSON encoder against Go's own encoding/json (Debian golang-go)."""

from __future__ import annotations

import base64
import json
import math
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from toolchain.gojson import decode_any, encode

ORACLE = Path(__file__).parent / "gojson_oracle" / "main.go"

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(
        shutil.which("go") is None, reason="Go is not installed (make setup installs it)"
    ),
]


def _floats(rng: random.Random) -> list[float]:
    edge = [
        0.1,
        0.7,
        0.6,
        1.0,
        10.0,
        100.0,
        1e20,
        1e21,
        9.999999999999999e20,
        1e-6,
        9.99e-7,
        1e-7,
        1.5e-10,
        5e-324,
        1.7976931348623157e308,
        -0.0,
        0.0,
        -2.5,
        123456789.0,
        12345678901234567.0,
        2.0**53 + 2,
        1e100,
        1e-100,
        0.30000000000000004,
    ]
    out = list(edge)
    while len(out) < 2000:
        bits = rng.getrandbits(64)
        (x,) = struct.unpack("<d", struct.pack("<Q", bits))
        if not (math.isnan(x) or math.isinf(x)):
            out.append(x)
    for _ in range(1000):  # human-scale values, where the plain/exponent switch happens
        out.append(round(rng.uniform(-1e4, 1e4), rng.randint(0, 9)) * 10.0 ** rng.randint(-12, 24))
    return out


def _strings(rng: random.Random) -> list[str]:
    pool = (
        "abc <>&\"\\/\n\r\t\x00\x01\x1f\x7f\u2028\u2029é日本🎉\ufffd\u0085\u00a0'"
        "{{ .Prompt }}<|im_end|>"
    )
    out = ["", "<|endoftext|>", "a\u2028b", "tab\there", "\x7f", "😀"]
    for _ in range(500):
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 30))))
    return out


def _maps(rng: random.Random) -> list[object]:
    keys = ["b", "a", "B", "é", "z", "stop", "top_k", "_x", "a1", "aa", "日本", "~"]
    out: list[object] = []
    for _ in range(100):
        m = {
            k: rng.choice([1.5, "x<y", True, None, [1, "s"], {"q": 2, "p": [0.1]}])
            for k in rng.sample(keys, rng.randint(0, len(keys)))
        }
        out.append(m)
    return out


def test_encoder_matches_go(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    floats, strings, maps = _floats(rng), _strings(rng), _maps(rng)
    payload = {
        "floats": [str(struct.unpack("<Q", struct.pack("<d", x))[0]) for x in floats],
        "strings": [base64.b64encode(s.encode()).decode() for s in strings],
        "maps": maps,
    }
    result = subprocess.run(
        ["go", "run", str(ORACLE)],
        input=json.dumps(payload).encode(),
        capture_output=True,
        check=True,
        timeout=300,
        env={**os.environ, "GO111MODULE": "off", "GOFLAGS": ""},
    )
    # one document per line; split on "\n" only (str.splitlines also splits on U+0085 ...)
    lines = [ln + "\n" for ln in result.stdout.decode().split("\n")[:-1]]
    # Go 1.19 (Debian) writes \b and \f as \u0008 and \u000c; the reference's Go >= 1.22
    # writes the short escapes, which is what we reproduce.
    lines = [ln.replace("\\u0008", "\\b").replace("\\u000c", "\\f") for ln in lines]
    ours = [encode(x).decode() for x in floats]
    ours += [encode(s).decode() for s in strings]
    ours += [encode(decode_any(json.dumps(m))).decode() for m in maps]
    assert len(lines) == len(ours)
    mismatches = [(i, o, g) for i, (o, g) in enumerate(zip(ours, lines, strict=True)) if o != g]
    assert not mismatches, mismatches[:10]
