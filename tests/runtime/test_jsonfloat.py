"""Embedding vectors as the reference writes them: Go's encoding/json on []float32 (/api/embed,
/v1/embeddings) and []float64 (legacy /api/embeddings), checked against Go itself
(tests/oracle/gojson) over every exponent range, and through the HTTP routes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest

from runtime.jsonfloat import RawJSON, go_json_floats
from runtime.streaming import dumps
from tests.oracle.go_oracle import build

GOJSON = Path(__file__).resolve().parents[1] / "oracle" / "gojson"


@pytest.fixture(scope="module")
def go_json() -> Path:
    try:
        return build(GOJSON)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _values(dtype: type[np.floating], seed: int) -> np.ndarray:
    """Random bit patterns (every exponent), magnitudes spread over 1e-8..1e22, embedding-
    like values, and the edges of Go's positional range."""
    rng = np.random.default_rng(seed)
    width = np.dtype(dtype).itemsize * 8
    bits = rng.integers(0, 2 ** (width - 1), 20000, dtype=np.uint64)
    bits |= rng.integers(0, 2, 20000, dtype=np.uint64) << np.uint64(width - 1)
    raw = bits.astype(np.uint32 if width == 32 else np.uint64).view(dtype)
    edges = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1e-6, 9.99999e-7, 1.0000001e-6, 1e-5, 5e-6]
    edges += [1e15, 1e16, 1e20, 9.99999e20, 1e21, 123456789.0, 1e-45, 5e-324, 3.4e38]
    return np.concatenate(
        [
            np.array(edges).astype(dtype),
            raw[np.isfinite(raw)],
            (10.0 ** rng.uniform(-8, 22, 5000)).astype(dtype),
            (rng.standard_normal(5000) / 20).astype(dtype),
        ]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_floats_are_written_as_go_writes_them(go_json: Path, dtype: type[np.floating]) -> None:
    values = _values(dtype, seed=7)
    tag, fmt = ("f32", "%08x") if dtype is np.float32 else ("f64", "%016x")
    view = values.view(np.uint32 if dtype is np.float32 else np.uint64)
    rows = [values[i : i + 500] for i in range(0, len(values), 500)]
    bits = [view[i : i + 500] for i in range(0, len(values), 500)]
    lines = "".join(tag + " " + " ".join(fmt % b for b in row) + "\n" for row in bits)
    go = subprocess.run(
        [str(go_json)], input=lines, capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert len(go) == len(rows)
    for row, expected in zip(rows, go, strict=True):
        assert go_json_floats(row).decode() == expected
    # a 2-D array is the slice of slices
    matrix = np.stack(rows[:3])
    assert go_json_floats(matrix).decode() == "[" + ",".join(go[:3]) + "]"


def test_numbers_read_back_as_the_same_floats() -> None:
    """Shortest, not rounded: each number reads back as the float written (Go writes
    -0 as `-0`, which JSON readers take for the integer 0: only its sign is lost)."""
    for dtype in (np.float32, np.float64):
        values = _values(dtype, seed=8)
        back = np.array(json.loads(go_json_floats(values)), dtype=dtype)
        assert np.array_equal(back, values)
        if dtype is np.float32:  # a float32's own shortest digits, not its float64's
            assert len(go_json_floats(values)) < len(json.dumps(values.tolist()))


def test_only_float_arrays() -> None:
    with pytest.raises(TypeError):
        go_json_floats(np.arange(3))


def test_raw_json_goes_in_as_it_is() -> None:
    body = {"model": "m\x00", "embeddings": RawJSON(b"[[1,0.5]]"), "n": [RawJSON(b"[]"), "é"]}
    assert dumps(body) == '{"model":"m\\u0000","embeddings":[[1,0.5]],"n":[[],"é"]}'.encode()
    assert dumps({"plain": 1.5}) == b'{"plain":1.5}'
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_routes_send_the_references_numbers(server: str, minilm_model: str) -> None:
    """/api/embed and /v1/embeddings send float32 shortest digits (Go's []float32), the
    legacy /api/embeddings float64 ones ([]float64); base64 holds the same float32 bits."""
    texts = ["The quick brown fox jumps over the lazy dog.", "A second, different text."]
    with httpx.Client(base_url=server, timeout=600) as client:
        body = client.post("/api/embed", json={"model": minilm_model, "input": texts}).content
        vectors = np.array(json.loads(body)["embeddings"], np.float32)
        assert vectors.shape == (2, 384)
        assert b'"embeddings":' + go_json_floats(vectors) + b"," in body
        openai = client.post("/v1/embeddings", json={"model": minilm_model, "input": texts})
        for item, vector in zip(openai.json()["data"], vectors, strict=True):
            assert np.array_equal(np.array(item["embedding"], np.float32), vector)
            assert b'"embedding":' + go_json_floats(vector) + b"," in openai.content
        encoded = client.post(
            "/v1/embeddings",
            json={"model": minilm_model, "input": texts, "encoding_format": "base64"},
        ).json()["data"]
        for item, vector in zip(encoded, vectors, strict=True):
            assert base64.b64decode(item["embedding"]) == vector.astype("<f4").tobytes()
        legacy = client.post("/api/embeddings", json={"model": minilm_model, "prompt": texts[0]})
        raw = np.array(legacy.json()["embedding"], np.float64)
        assert legacy.content == b'{"embedding":' + go_json_floats(raw) + b"}"
        empty = client.post("/api/embed", json={"model": minilm_model, "input": []})
        assert empty.json()["embeddings"] == []
