"""Importance matrices measured as `llama-imatrix` measures them, through llama.cpp's own
forward pass (llama-cpp-python, with an eval callback on the graph).

For every matrix multiplication whose weight is a `blk.*` tensor and whose input has at
least 16 rows of float32 activations, the callback adds the squares of the input, column
by column, to that weight's sums and the number of rows to its count. The text is cut
into chunks of `n_ctx` tokens, each evaluated from an empty cache with BOS in front, like
llama-imatrix with `-b` equal to `-c`. The result is written in llama.cpp's GGUF imatrix
format (`quant.imatrix.write_imatrix_gguf`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from toolchain.quality import EvalError, chunks_of, quiet_stderr


class _Tensor(ctypes.Structure):
    """`struct ggml_tensor` of the ggml llama-cpp-python links (ggml.h)."""


_Tensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_Tensor) * 10),
    ("view_src", ctypes.POINTER(_Tensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]
_F32 = 0


def _op_ids() -> tuple[int, int]:
    """The `ggml_op` values of MUL_MAT and MUL_MAT_ID, asked of the library itself."""
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    names = {}
    for op in range(1, 120):
        name = lib.ggml_op_name(op)
        if name is None:
            break
        names[name.decode()] = op
    return names["MUL_MAT"], names["MUL_MAT_ID"]


def weight_name(name: str) -> str:
    """llama-imatrix's `filter_tensor_name`: the text between the first two `#`, if any."""
    if "#" not in name:
        return name
    rest = name.split("#", 1)[1]
    return rest.split("#", 1)[0]


@dataclass
class ImatrixStats:
    """Sums of squared inputs (float32, accumulated row by row) and row counts per weight."""

    chunk_size: int
    sums: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        return max((c // self.chunk_size for c in self.counts.values()), default=0)

    def add(self, name: str, rows: npt.NDArray[np.float32]) -> None:
        acc = self.sums.get(name)
        if acc is None:
            acc = self.sums[name] = np.zeros(rows.shape[1], dtype=np.float32)
        elif acc.size != rows.shape[1]:
            raise EvalError(f"inconsistent size for {name} ({acc.size} vs {rows.shape[1]})")
        # llama-imatrix adds one row after another in float: so does np.add.reduce over
        # the rows of a C-contiguous array, starting from the running sums
        sq = np.ascontiguousarray(rows * rows)
        np.add.reduce(np.concatenate([acc[None, :], sq]), axis=0, out=acc)
        self.counts[name] = self.counts.get(name, 0) + rows.shape[0]


def _collector(stats: ImatrixStats) -> Callable[[int, bool, int], bool]:
    mul_mat, mul_mat_id = _op_ids()

    def callback(ptr: int, ask: bool, _user: int) -> bool:
        t = ctypes.cast(ptr, ctypes.POINTER(_Tensor)).contents
        if t.op == mul_mat_id:
            raise_later.append("mixture-of-experts models are not supported yet")
            return False
        if t.op != mul_mat:
            return not ask
        src0, src1 = t.src[0].contents, t.src[1].contents
        name = weight_name(src0.name.decode(errors="replace"))
        if ask:
            return src1.ne[1] >= 16 and src1.type == _F32 and name.startswith("blk.")
        ne0, ne1, ne2, ne3 = (int(v) for v in src1.ne)
        n_mat = int(src0.ne[2]) * int(src0.ne[3])
        if n_mat != 1 or ne2 * ne3 != 1:
            raise_later.append(f"3-D weight {name} is not supported yet")
            return True
        nb1 = int(src1.nb[1])
        buf = (ctypes.c_char * (nb1 * (ne1 - 1) + 4 * ne0)).from_address(src1.data)
        rows = np.ndarray((ne1, ne0), dtype=np.float32, buffer=memoryview(buf), strides=(nb1, 4))
        stats.add(name, rows)
        return True

    raise_later: list[str] = []
    callback.errors = raise_later  # type: ignore[attr-defined]
    return callback


Progress = Callable[[int, int], None]


def _tokenize(vocab: object, text: str) -> list[int]:
    """`common_tokenize(ctx, text, add_special=true, parse_special=false)`."""
    import llama_cpp

    raw = text.encode()
    size = len(raw) + 2
    for _ in range(2):
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, size, True, False)
        if n >= 0:
            return list(buf[:n])
        size = -n
    raise EvalError("llama.cpp could not tokenize the text")


def compute_imatrix(
    model: Path,
    text: str,
    n_ctx: int = 512,
    *,
    max_chunks: int | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> ImatrixStats:
    """Run `model` over `text` and collect what llama-imatrix collects."""
    import llama_cpp

    stats = ImatrixStats(chunk_size=n_ctx)
    collect = _collector(stats)
    cb = llama_cpp.ggml_backend_sched_eval_callback(collect)
    mparams = llama_cpp.llama_model_default_params()
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = n_ctx
    if threads:
        cparams.n_threads = cparams.n_threads_batch = threads
    cparams.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    cparams.cb_eval = cb
    with quiet_stderr():
        mdl = llama_cpp.llama_model_load_from_file(str(model).encode(), mparams)
        if not mdl:
            raise EvalError(f"{model}: llama.cpp could not load the model")
        ctx = llama_cpp.llama_init_from_model(mdl, cparams)
    try:
        vocab = llama_cpp.llama_model_get_vocab(mdl)
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        bos = int(llama_cpp.llama_vocab_bos(vocab))
        chunks = chunks_of(_tokenize(vocab, text), n_ctx, max_chunks)
        batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
        try:
            for i, chunk in enumerate(chunks):
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
                batch.n_tokens = n_ctx
                for k, tok in enumerate(chunk):
                    batch.token[k] = bos if (k == 0 and add_bos) else int(tok)
                    batch.pos[k] = k
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = 0
                    batch.logits[k] = True
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise EvalError(f"{model}: llama.cpp failed to evaluate chunk {i + 1}")
                errors = collect.errors  # type: ignore[attr-defined]
                if errors:
                    raise EvalError(errors[0])
                if progress:
                    progress(i + 1, len(chunks))
        finally:
            llama_cpp.llama_batch_free(batch)
    finally:
        with quiet_stderr():
            llama_cpp.llama_free(ctx)
            llama_cpp.llama_model_free(mdl)
    return stats
