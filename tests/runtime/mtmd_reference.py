"""llama.cpp's own multimodal path (libmtmd through llama-cpp-python's low-level bindings),
in the test process, as the reference for what the server must generate from a prompt with
images: `mtmd_tokenize` + `mtmd_helper_eval_chunks`, then greedy decoding one token at a time.
Nothing of mfc's runtime is used here."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp as lc
import llama_cpp.mtmd_cpp as mtmd

MARKER = mtmd.mtmd_default_marker().decode("utf-8")


class MtmdReference:
    """A text GGUF and its mmproj GGUF, one context of `n_ctx` positions."""

    def __init__(self, text_gguf: Path, mmproj: Path, n_ctx: int = 512) -> None:
        lc.llama_backend_init()
        params = lc.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(str(text_gguf).encode(), params)
        assert self.model, text_gguf
        self.vocab = lc.llama_model_get_vocab(self.model)
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_ctx
        cparams.n_ubatch = n_ctx
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        assert self.ctx
        mparams = mtmd.mtmd_context_params_default()
        mparams.use_gpu = False
        mparams.print_timings = False
        self.mctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), self.model, mparams)
        assert self.mctx, mmproj
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        self.n_batch = n_ctx

    def close(self) -> None:
        mtmd.mtmd_free(self.mctx)
        lc.llama_free(self.ctx)
        lc.llama_model_free(self.model)

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:n]

    def greedy(self, prompt: str, images: list[bytes], n: int) -> list[int]:
        """Up to `n` greedy tokens after `prompt` (its MARKERs are `images`, in order)."""
        lc.llama_memory_seq_rm(lc.llama_get_memory(self.ctx), -1, -1, -1)
        bitmaps = []
        for data in images:
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.mctx, buf, len(data), False)
            assert bitmap, "image did not decode"
            bitmaps.append(bitmap)
        chunks = mtmd.mtmd_input_chunks_init()
        raw = prompt.encode("utf-8")
        text = mtmd.mtmd_input_text(raw, len(raw), True, True)
        array = (mtmd.mtmd_bitmap_p_ctypes * max(len(bitmaps), 1))(*bitmaps)
        assert mtmd.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), array, len(bitmaps)) == 0
        n_past = lc.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(
            self.mctx, self.ctx, chunks, 0, 0, self.n_batch, True, ctypes.byref(n_past)
        )
        assert rc == 0
        mtmd.mtmd_input_chunks_free(chunks)
        for bitmap in bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)
        pos = n_past.value
        batch = lc.llama_batch_init(1, 0, 1)
        out: list[int] = []
        try:
            for _ in range(n):
                logits = lc.llama_get_logits_ith(self.ctx, -1)
                token = max(range(self.n_vocab), key=lambda j: logits[j])
                if lc.llama_vocab_is_eog(self.vocab, token):
                    break
                out.append(token)
                batch.n_tokens = 1
                batch.token[0] = token
                batch.pos[0] = pos
                batch.n_seq_id[0] = 1
                batch.seq_id[0][0] = 0
                batch.logits[0] = True
                pos += 1
                assert lc.llama_decode(self.ctx, batch) == 0
        finally:
            lc.llama_batch_free(batch)
        return out

    def text(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")
