"""Gemma3nForConditionalGeneration / Gemma3nForCausalLM -> GGUF "gemma3n": the language
model (the vision and audio towers and their embedders are left out, as llama.cpp's
converter does for the text GGUF).

What differs from Gemma 3 (tensor names come from gguf-py):
- RMSNorm scales by w, not (1 + w): no norm weight is shifted;
- AltUp's three input and three output projections (`altup_projections.N`) are stacked
  into one [3, n, n] tensor each;
- the per-layer embedding has rows only for the text vocabulary
  (vocab_size_per_layer_input): it is padded with zero rows to vocab_size, the rows of
  the vision/audio tokens the main embedding has (llama.cpp indexes both by token);
- the feed-forward width is per layer; activation sparsity is written as the normal
  quantile of each layer's target sparsity (-inf for none);
- the sliding-window pattern is always written, from layer_types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist
from typing import Any

import gguf
import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.gemma3 import ARCH as GEMMA3
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Shape, Split
from toolchain.convert.metadata import Metadata

_K = gguf.Keys

#: what the bundled llama.cpp (0.3.36) fixes instead of reading it from the GGUF: the
#: released E2B/E4B values. Other values would not load, or run a different model.
LLAMA_CPP_FIXED = {
    "altup_num_inputs": 4,
    "altup_active_idx": 0,
    "hidden_size_per_layer_input": 256,
    "laurel_rank": 64,
}
#: llama.cpp applies activation sparsity (at 0.95) to exactly the first 10 layers, and
#: shares KV from layer 20 on (layers 18 and 19, one sliding and one full, being reused)
LLAMA_CPP_SPARSE_LAYERS = 10
LLAMA_CPP_FIRST_SHARED_KV = 20


def _runnable(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """config.json, if llama.cpp runs the model it describes; else a ValueError naming
    the setting it would ignore."""
    for key, fixed in LLAMA_CPP_FIXED.items():
        if config.get(key) != fixed:
            raise ValueError(
                f"{key} is {config.get(key)!r}: the bundled llama.cpp runs Gemma 3n only "
                f"with {fixed} (the released models' value)"
            )
    n_layer = int(config["num_hidden_layers"])
    sparse = [0.95] * LLAMA_CPP_SPARSE_LAYERS + [0.0] * (n_layer - LLAMA_CPP_SPARSE_LAYERS)
    if list(config.get("activation_sparsity_pattern") or []) != sparse:
        raise ValueError(
            "activation_sparsity_pattern must be 0.95 for the first "
            f"{LLAMA_CPP_SPARSE_LAYERS} layers and 0 after: the bundled llama.cpp "
            "applies exactly that whatever the model says"
        )
    first_shared = n_layer - int(config.get("num_kv_shared_layers") or 0)
    kinds = config.get("layer_types") or []
    if first_shared != min(n_layer, LLAMA_CPP_FIRST_SHARED_KV) or (
        first_shared < n_layer
        and kinds[first_shared - 2 : first_shared] != ["sliding_attention", "full_attention"]
    ):
        raise ValueError(
            f"KV sharing from layer {first_shared} of {n_layer}: the bundled llama.cpp "
            f"shares from layer {LLAMA_CPP_FIRST_SHARED_KV} on (reusing layers "
            f"{LLAMA_CPP_FIRST_SHARED_KV - 2}, sliding, and {LLAMA_CPP_FIRST_SHARED_KV - 1}, full)"
        )
    return config


def _quantile(p: float) -> float:
    """The standard normal's p-quantile, as float32 (torch's icdf at the released
    sparsity 0.95; other targets may differ from it in the last bit)."""
    if p <= 0.0 or p >= 1.0:
        return -math.inf if p <= 0.0 else math.inf
    return float(np.float32(NormalDist().inv_cdf(p)))


def _per_layer(h: HParams, key: str) -> list[int]:
    value = h.get(key)
    return list(value) if isinstance(value, list) else [int(value)] * _n_layer(h)


def _n_layer(h: HParams) -> int:
    return h.int("num_hidden_layers")


def _metadata(h: HParams, md: Metadata) -> None:
    # Gemma 3's keys with the feed-forward width per layer instead of one number
    flat = {**h.config, "intermediate_size": _per_layer(h, "intermediate_size")[0]}
    GEMMA3.metadata(HParams(flat, h.path), md)
    md.i32s("{arch}.feed_forward_length", _per_layer(h, "intermediate_size"))
    md.u32(_K.LLM.ALTUP_ACTIVE_IDX, h.int("altup_active_idx"))
    md.u32(_K.LLM.ALTUP_NUM_INPUTS, h.int("altup_num_inputs"))
    md.u32(_K.LLM.EMBD_LENGTH_PER_LAYER_INP, h.int("hidden_size_per_layer_input"))
    md.u32(_K.Attention.SHARED_KV_LAYERS, h.int("num_kv_shared_layers"))
    md.f32s(
        _K.LLM.ACTIVATION_SPARSITY_SCALE,
        [_quantile(float(p)) for p in h.get("activation_sparsity_pattern")],
    )
    md.bools(
        _K.Attention.SLIDING_WINDOW_PATTERN,
        [kind == "sliding_attention" for kind in h.get("layer_types")],
    )


def _per_layer_width(h: HParams) -> int:
    return _n_layer(h) * h.int("hidden_size_per_layer_input")


def _pad_rows(w: np.ndarray, h: HParams) -> np.ndarray:
    """The per-layer embedding with zero rows for the tokens it has no row for."""
    pad = decoder.n_vocab(h) - w.shape[0]
    return np.concatenate([w, np.zeros((pad, w.shape[1]), dtype=w.dtype)]) if pad > 0 else w


def _stacked(h: HParams) -> tuple[int, int, int]:
    n = decoder.n_embd(h)
    return h.int("altup_num_inputs") - 1, n, n


_SHAPES: dict[str, Shape] = {
    **{k: v for k, v in GEMMA3.shapes.items() if "ffn_" not in k},
    "per_layer_token_embd.weight": lambda h: (
        h.int("vocab_size_per_layer_input", default=decoder.n_vocab(h)),
        _per_layer_width(h),
    ),
    "per_layer_model_proj.weight": lambda h: (_per_layer_width(h), decoder.n_embd(h)),
    "altup_proj.weight": _stacked,
    "altup_unembd_proj.weight": _stacked,
    "blk.{bid}.laurel_l.weight": lambda h: (h.int("laurel_rank"), decoder.n_embd(h)),
    "blk.{bid}.laurel_r.weight": lambda h: (decoder.n_embd(h), h.int("laurel_rank")),
}

ARCH = text_arch(
    ("Gemma3nForConditionalGeneration", "Gemma3nForCausalLM"),
    "gemma3n",
    family="Gemma 3n (text)",
    metadata=_metadata,
    names={
        "model.altup_projections.experts": "altup_proj",
        "model.altup_unembed_projections.experts": "altup_unembd_proj",
    },
    renames=(
        (r"\.(altup_(?:unembed_)?projections)\.(\d+)\.", r".\1.experts.\2."),
        (r"\.correct_output_scale$", ".correct_output_scale.weight"),
    ),
    skip=(r"model\.(audio_tower|embed_audio|embed_vision)\..*", r"lm_head\.weight"),
    shapes=_SHAPES,
    splits={
        "per_layer_token_embd.weight": (
            Split(
                "per_layer_token_embd.weight",
                lambda shape, h: (decoder.n_vocab(h), shape[1]),
                _pad_rows,
            ),
        )
    },
    keep_f32=frozenset(
        {"blk.{bid}.altup_correct_coef.weight", "blk.{bid}.altup_predict_coef.weight"}
    ),
    text_part=True,
    config_view=_runnable,
)
