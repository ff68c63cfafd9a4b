"""One llama.cpp embeddings context: pooled vectors for a group of token sequences.

Each sequence of a pass is its own llama.cpp sequence and attends only to itself, so a
sequence gets the vector it would get alone (to float rounding). The context is made on
first use and used by one thread at a time; llama-cpp-python's ctypes calls release the
GIL, so contexts on different threads compute in parallel.
"""

from __future__ import annotations

from typing import Any

import llama_cpp as lc
import numpy as np

from runtime.errors import ApiError
from runtime.llama import ContextSettings, LlamaModel


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
        self.threads = settings.n_threads  # the context's threads now

    def close(self) -> None:
        if self.batch is not None:
            lc.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None

    def run(self, sequences: list[list[int]], threads: int = 0) -> list[np.ndarray]:
        """The pooled vector (float32, not normalised) of each token sequence, in one pass
        with `threads` threads (0: the settings' count). The sequences hold at most `n_ctx`
        tokens and `n_seq_max` sequences together."""
        if self.ctx is None:
            self.ctx = self.model.new_context(self.settings)
            self.mem = lc.llama_get_memory(self.ctx)
            self.batch = lc.llama_batch_init(self.settings.n_ctx, 0, 1)
            self.threads = self.settings.n_threads
        threads = threads or self.settings.n_threads
        if threads != self.threads:
            lc.llama_set_n_threads(self.ctx, threads, threads)
            self.threads = threads
        batch: Any = self.batch
        lc.llama_memory_clear(self.mem, True)
        n = 0
        for seq, tokens in enumerate(sequences):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        rc = (
            lc.llama_encode(self.ctx, batch)
            if self.encoder_only
            else lc.llama_decode(self.ctx, batch)
        )
        if rc != 0:
            raise ApiError(500, f"failed to compute embeddings (llama.cpp returned {rc})")
        dim = self.model.n_embd
        vectors: list[np.ndarray] = []
        for seq in range(len(sequences)):
            ptr = lc.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise ApiError(500, "failed to compute embeddings: no pooled output")
            vectors.append(np.ctypeslib.as_array(ptr, shape=(dim,)).copy())
        return vectors
