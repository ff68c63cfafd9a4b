"""Synthetic weights that exercise every branch of the quantizers: outliers, all-zero and
constant blocks, +-a ties, -0.0, float32 subnormals, tiny and huge magnitudes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("normal", "tiny", "huge", "halves", "zeros", "positive", "cubed", "small")


def edge_rows(seed: int, n: int = 512, rows: int = 24) -> np.ndarray:
    """`rows` rows of `n` values of one of the KINDS, with special rows and blocks mixed in."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    x = rng.standard_normal((rows, n)).astype(np.float32)
    scale = {"tiny": 1e-30, "huge": 3e3, "small": 1e-5}.get(kind, 1.0)
    x *= np.float32(scale)
    if kind == "halves":
        x = np.round(x * 2) / 2  # many exact ties
    if kind == "zeros":
        x[:, ::7] = 0.0
        x[:, 1::5] = -0.0
    if kind == "positive":
        x = np.abs(x) + 1
    if kind == "cubed":
        x = x**3  # heavy tails
    outliers = rng.random((rows, n)) < 0.002
    x[outliers] *= 60
    np.clip(x, -3e4, 3e4, out=x)  # scales stay finite in fp16 for every type
    x[0] = 0.0  # all-zero row
    x[1] = 1.25  # constant row
    x[2] = -0.0
    x[3, ::2] = 0.0
    x[4, 5] = 3e4 if kind != "tiny" else 1e-20  # one outlier dominating its blocks
    x[5, : min(n, 256)] = np.float32(1e-38)  # float32 subnormals
    x[6] = np.tile(np.array([1.0, -1.0], dtype=np.float32), n // 2)  # +-a ties
    x[7, 100 % n : 100 % n + 40] = 0.0  # a zero run across block borders
    x[8, :32] = 7.0  # one constant block
    x[9, 32:64] = -3.0
    return x.astype(np.float32)


def imatrix_for(seed: int, n: int) -> np.ndarray:
    """Positive importance weights with a heavy tail and some exact zeros."""
    rng = np.random.default_rng(1000 + seed)
    w = (rng.random(n) ** 3 * 5).astype(np.float32)
    if seed % 3 == 0:
        w[::11] = 0.0
    return w


def synthetic_model(path: Path, *, tied: bool) -> dict[str, np.ndarray]:
    """A small llama-architecture F32 GGUF (2 blocks) built from `edge_rows`, written with
    gguf-py. Row widths are K-quant friendly (512, 1024) except blk.1.attn_k (96: falls
    back to Q4_0/Q5_0/...) and blk.1.attn_q (80: falls back to F16). Returns an imatrix."""
    import gguf

    n_embd, n_ff, vocab = 512, 1024, 64
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("mfc synthetic")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    seed = 0
    tensors: dict[str, np.ndarray] = {}

    def add(name: str, rows: int, n: int) -> None:
        nonlocal seed
        seed += 1
        tensors[name] = edge_rows(seed, n, rows)

    add("token_embd.weight", vocab, n_embd)
    if not tied:
        add("output.weight", vocab, n_embd)
    tensors["output_norm.weight"] = np.linspace(0.5, 1.5, n_embd, dtype=np.float32)
    for i in range(2):
        b = f"blk.{i}."
        tensors[b + "attn_norm.weight"] = np.ones(n_embd, dtype=np.float32)
        tensors[b + "ffn_norm.weight"] = np.ones(n_embd, dtype=np.float32)
        add(b + "attn_q.weight", 16, 80 if i == 1 else n_embd)
        add(b + "attn_k.weight", 16, 96 if i == 1 else n_embd)
        add(b + "attn_v.weight", 16, n_embd)
        add(b + "attn_output.weight", 24, n_embd)
        add(b + "ffn_gate.weight", 24, n_embd)
        add(b + "ffn_up.weight", 24, n_embd)
        add(b + "ffn_down.weight", 24, n_ff)
    for name, a in tensors.items():  # insertion order differs from llama.cpp's on purpose
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {
        name: imatrix_for(i, a.shape[-1])
        for i, (name, a) in enumerate(tensors.items())
        if a.ndim == 2
    }
