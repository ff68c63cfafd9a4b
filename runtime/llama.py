"""The slice of llama.cpp (through llama-cpp-python's ctypes bindings) the runtime uses.

One `LlamaModel` per loaded GGUF (+ LoRA adapters); contexts are made from it with
`new_context`. llama.cpp's own log lines go to the `mfc.llama` logger, and the last error
lines are kept so a failed load can say why.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc

from runtime.errors import ModelLoadError

log = logging.getLogger("mfc.llama")

# ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT (continues the previous line)
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_recent_errors: collections.deque[str] = collections.deque(maxlen=8)
_backend_lock = threading.Lock()
_backend_state = {"ready": False}


@lc.llama_log_callback  # type: ignore[untyped-decorator]
def _on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    message = text.decode("utf-8", errors="replace").rstrip("\n")
    if level == 4 and message:
        _recent_errors.append(message)
    if message:
        log.log(_LEVELS.get(level, logging.DEBUG), "%s", message)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its logging to Python."""
    with _backend_lock:
        if _backend_state["ready"]:
            return
        lc.llama_log_set(_on_log, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _backend_state["ready"] = True


def _last_error(default: str) -> str:
    return _recent_errors[-1] if _recent_errors else default


KV_TYPES = {"f16": lc.GGML_TYPE_F16, "q8_0": lc.GGML_TYPE_Q8_0, "q4_0": lc.GGML_TYPE_Q4_0}
POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


@dataclass(frozen=True)
class ContextSettings:
    """llama_context_params the runtime chooses (the rest stay llama.cpp's defaults)."""

    n_ctx: int
    n_seq_max: int = 1
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = 1
    n_threads_batch: int = 1
    flash_attention: bool | None = None
    kv_cache_type: str = "f16"
    embeddings: bool = False
    pooling: int = lc.LLAMA_POOLING_TYPE_UNSPECIFIED
    kv_unified: bool = False


class LlamaModel:
    """A loaded GGUF with its LoRA adapters, its vocabulary and metadata."""

    def __init__(self, path: str, adapters: tuple[str, ...] = (), use_mmap: bool | None = None):
        init_backend()
        params = lc.llama_model_default_params()
        params.n_gpu_layers = 0
        if use_mmap is not None:
            params.load_mode = lc.LLAMA_LOAD_MODE_MMAP if use_mmap else lc.LLAMA_LOAD_MODE_NONE
        _recent_errors.clear()
        model = lc.llama_model_load_from_file(path.encode("utf-8"), params)
        if not model:
            raise ModelLoadError(f"unable to load model: {path}: {_last_error('invalid GGUF')}")
        self.path = path
        self.use_mmap = use_mmap
        self.ptr = model
        self.vocab = lc.llama_model_get_vocab(model)
        self.adapters: list[Any] = []
        for adapter_path in adapters:
            adapter = lc.llama_adapter_lora_init(model, adapter_path.encode("utf-8"))
            if not adapter:
                self.close()
                reason = _last_error("not a LoRA adapter for this model")
                raise ModelLoadError(f"unable to load adapter: {adapter_path}: {reason}")
            self.adapters.append(adapter)
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(model))
        self.n_embd = int(lc.llama_model_n_embd(model))
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.size = int(lc.llama_model_size(model))
        self.has_encoder = bool(lc.llama_model_has_encoder(model))
        self.has_decoder = bool(lc.llama_model_has_decoder(model))
        self.add_bos = bool(lc.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(lc.llama_vocab_bos(self.vocab))
        bos_text = lc.llama_vocab_get_text(self.vocab, self.bos) if self.bos >= 0 else b""
        self.bos_text = (bos_text or b"").decode("utf-8", errors="replace")
        self._piece = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        for adapter in self.adapters:
            lc.llama_adapter_lora_free(adapter)
        self.adapters = []
        if self.ptr:
            lc.llama_model_free(self.ptr)
            self.ptr = None

    def meta(self, key: str) -> str | None:
        """A scalar GGUF metadata value as text (None if absent)."""
        buf = ctypes.create_string_buffer(1024)
        n = lc.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            lc.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    @property
    def architecture(self) -> str:
        return self.meta("general.architecture") or ""

    @property
    def pooling_type(self) -> str | None:
        """The GGUF's `<arch>.pooling_type` name (an embedding model), or None."""
        raw = self.meta(f"{self.architecture}.pooling_type")
        if raw is None:
            return None
        names = {str(v): k for k, v in POOLING.items()}
        return names.get(raw.strip(), "mean")

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = True
    ) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def tokenize_prompt(self, text: str, add_special: bool = True) -> list[int]:
        """A rendered prompt's tokens; no second BOS when the template already wrote one."""
        if add_special and self.bos_text and text.startswith(self.bos_text):
            add_special = False
        return self.tokenize(text, add_special, True)

    def piece(self, token: int) -> bytes:
        """The bytes of one token as generated text (special tokens rendered)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = lc.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, True)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token, big, len(big), 0, True)
            data = big.raw[:n]
        else:
            data = self._piece.raw[:n]
        self._pieces[token] = data
        return data

    def is_eog(self, token: int) -> bool:
        return bool(lc.llama_vocab_is_eog(self.vocab, token))

    def new_context(self, settings: ContextSettings) -> Any:
        """A llama_context over this model with its adapters applied."""
        params = lc.llama_context_default_params()
        params.n_ctx = settings.n_ctx
        params.n_batch = settings.n_batch
        params.n_ubatch = settings.n_ubatch
        params.n_seq_max = settings.n_seq_max
        params.n_threads = settings.n_threads
        params.n_threads_batch = settings.n_threads_batch
        params.embeddings = settings.embeddings
        params.pooling_type = settings.pooling
        params.kv_unified = settings.kv_unified
        params.no_perf = True
        params.flash_attn_type = {
            None: lc.LLAMA_FLASH_ATTN_TYPE_AUTO,
            True: lc.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            False: lc.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[settings.flash_attention]
        kv_type = KV_TYPES[settings.kv_cache_type]
        params.type_k = kv_type
        params.type_v = kv_type
        _recent_errors.clear()
        ctx = lc.llama_init_from_model(self.ptr, params)
        if not ctx:
            raise ModelLoadError(f"unable to create context: {_last_error('llama.cpp refused')}")
        if self.adapters:
            n = len(self.adapters)
            arr = (lc.llama_adapter_lora_p_ctypes * n)(*self.adapters)
            scales = (ctypes.c_float * n)(*([1.0] * n))
            if lc.llama_set_adapters_lora(ctx, arr, n, scales):
                lc.llama_free(ctx)
                raise ModelLoadError("unable to apply LoRA adapters to the context")
        return ctx
