"""One llama.cpp embeddings context: pooled vectors for a group of token sequences.

Each sequence of a pass is its own llama.cpp sequence and attends only to itself, so a
sequence gets the vector it would get alone (to float rounding). The context is made on
first use and used by one thread at a time; llama-cpp-python's ctypes calls release the
GIL, so contexts on different threads compute in parallel.

A pass of a model without a KV cache (BERT: attention over the pass, masked per
sequence) under `FA_TILE` tokens takes llama.cpp's per-pair flash attention, ~30x dearer
a query-key pair than its tiled path: all-MiniLM-L6-v2 F16, one thread, CPU ms a pass:
one 50-token text 16.8, 56 tokens 19.5, 63 tokens 22.9, against 12.0 for 64 tokens. So a
pass that costs more than a 64-token one gets a filler sequence up to `FA_TILE` tokens:
its own sequence, masked from the others, its vector never read.
"""

from __future__ import annotations

from typing import Any

import llama_cpp as lc
import numpy as np

from runtime.errors import ApiError
from runtime.llama import ContextSettings, LlamaModel

#: tokens from which llama.cpp's CPU flash attention runs tiles of this many queries by
#: this many keys (GGML_FA_TILE_Q and _KV in the pinned llama.cpp)
FA_TILE = 64
#: a query-key pair on the per-pair path, in tokens' worth of a pass, times the model's
#: width: 0.019 tokens for all-MiniLM-L6-v2 (384 wide; 2.8 us of 150 us a token, one thread)
PAIR_COST_BY_WIDTH = 7.3
#: the one attention tile a filled pass computes, in tokens' worth
TILE_COST = 3


def filler_tokens(lengths: list[int], n_embd: int) -> int:
    """Tokens of a filler sequence that lift a pass of sequences of `lengths` onto the
    tiled attention path, when that costs less than the per-pair path (0: none)."""
    n = sum(lengths)
    if n >= FA_TILE:
        return 0
    per_pair = PAIR_COST_BY_WIDTH / max(n_embd, 1)
    small = n + per_pair * sum(length * length for length in lengths)
    return FA_TILE - n if small > FA_TILE + TILE_COST else 0


class EmbedContext:
    """A llama.cpp context with pooled embeddings, `capacity` tokens and `n_seq` sequences
    per pass."""

    def __init__(self, model: LlamaModel, settings: ContextSettings) -> None:
        self.model = model
        self.settings = settings
        self.ctx: Any = None
        self.batch: Any = None
        self.mem: Any = None
        self.encoder_only = model.has_encoder and not model.has_decoder
        self.fills = False  # passes may get a filler sequence (see the module docstring)
        self.threads = settings.n_threads  # the context's threads now

    def close(self) -> None:
        if self.batch is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None

    def open(self) -> None:
        """Make the llama.cpp context (on first use)."""
        if self.ctx is not None:
            return
        self.ctx = self.model.new_context(self.settings)
        self.mem = lc.llama_get_memory(self.ctx)
        # without a KV cache (BERT), attention runs over the pass itself
        self.fills = (
            not self.mem
            and self.settings.flash_attention is not False
            and min(self.settings.n_ctx, self.settings.n_ubatch) >= FA_TILE
            and self.model.n_ctx_train >= FA_TILE  # the filler's positions exist
        )
        self.batch = lc.llama_batch_init(self.settings.n_ctx, 0, 1)
        self.threads = self.settings.n_threads

    def run(self, sequences: list[list[int]], threads: int = 0) -> list[np.ndarray]:
        """The pooled vector (float32, not normalised) of each token sequence, in one pass
        with `threads` threads (0: the settings' count). The sequences hold at most `n_ctx`
        tokens and `n_seq_max` sequences together."""
        self.open()
        threads = threads or self.settings.n_threads
        if threads != self.threads:
            lc.llama_set_n_threads(self.ctx, threads, threads)
            self.threads = threads
        lc.llama_memory_clear(self.mem, True)
        wanted = len(sequences)
        fill = filler_tokens([len(t) for t in sequences], self.model.n_embd) if self.fills else 0
        if fill and len(sequences) < self.settings.n_seq_max:
            token = next(t[0] for t in sequences if t)  # any token: its vector is not read
            sequences = [*sequences, [token] * fill]
        n = 0
        for seq, tokens in enumerate(sequences):
            for pos, token in enumerate(tokens):
                self._put(n, token, pos, seq)
                n += 1
        self.batch.n_tokens = n
        rc = (
            lc.llama_encode(self.ctx, self.batch)
            if self.encoder_only
            else lc.llama_decode(self.ctx, self.batch)
        )
        if rc != 0:
            raise ApiError(500, f"failed to compute embeddings (llama.cpp returned {rc})")
        dim = self.model.n_embd
        vectors: list[np.ndarray] = []
        for seq in range(wanted):
            ptr = lc.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise ApiError(500, "failed to compute embeddings: no pooled output")
            vectors.append(np.ctypeslib.as_array(ptr, shape=(dim,)).copy())
        return vectors

    def _put(self, n: int, token: int, pos: int, seq: int) -> None:
        batch: Any = self.batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq
        batch.logits[n] = True
