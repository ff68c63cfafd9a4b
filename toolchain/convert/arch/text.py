"""Building an architecture entry from gguf-py's tables plus what is particular to it.

`text_arch` takes the GGUF architecture's tensor map from gguf-py (see gguf_names) and
adds only the entry's own facts: extra or overriding names, per-tensor transforms,
metadata, the tokenizer kinds it accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.gguf_names import tensor_table
from toolchain.convert.architecture import (
    Architecture,
    HParams,
    Reshape,
    Shape,
    Split,
    Transform,
)
from toolchain.convert.metadata import Metadata


def text_arch(
    hf_names: tuple[str, ...],
    gguf_arch: str,
    *,
    family: str,
    metadata: Callable[[HParams, Metadata], None] = decoder.write_common,
    vocab: tuple[str, ...] = ("spm", "bpe"),
    names: Mapping[str, str] | None = None,
    transforms: Mapping[str, Transform] | None = None,
    shapes: Mapping[str, Shape] | None = None,
    skip: tuple[str, ...] = (),
    extra_tensors: Callable[[HParams], dict[str, np.ndarray]] | None = None,
    keep_f32: frozenset[str] = frozenset(),
    uniform_blocks: bool = True,
    truncate_vocab: bool = False,
    output_required: bool = False,
    special_tokens: Mapping[str, str] | None = None,
    control_tokens: tuple[str, ...] = (),
    extra_blocks_key: str | None = None,
    reshapes: Mapping[str, Reshape] | None = None,
    splits: Mapping[str, tuple[Split, ...]] | None = None,
    renames: tuple[tuple[str, str], ...] = (),
    mxfp4_rows: Mapping[str, tuple[tuple[str, slice], ...]] | None = None,
    config_view: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    text_part: bool = False,
) -> Architecture:
    """An Architecture whose tensor names are gguf-py's for `gguf_arch` (plus `names`).

    `text_part`: the checkpoint is a multimodal one whose language model is converted
    (the text-only tensor names, the vision parts left out; its text_config is read as
    the config for every entry, see convert.text_config).
    """
    if text_part:
        renames = (*renames, *TEXT_PART_RENAMES)
        skip = (*skip, *VISION_PARTS)
    return Architecture(
        hf_names=hf_names,
        gguf_arch=gguf_arch,
        tensors={**tensor_table(gguf_arch), **(names or {})},
        metadata=metadata,
        vocab=vocab,
        skip=(*decoder.SKIP, *skip),
        shapes=dict(shapes if shapes is not None else decoder.SHAPES),
        transforms=dict(transforms or {}),
        extra_tensors=extra_tensors or (lambda _h: {}),
        keep_f32=keep_f32 | ALWAYS_F32,
        renames=((r"\.e_score_correction_bias$", ".e_score_correction.bias"), *renames),
        uniform_blocks=uniform_blocks,
        truncate_vocab=truncate_vocab,
        output_required=output_required,
        special_tokens=dict(special_tokens or {}),
        control_tokens=control_tokens,
        extra_blocks_key=extra_blocks_key,
        reshapes=dict(reshapes or {}),
        splits=dict(splits or {}),
        mxfp4_rows=dict(mxfp4_rows or {}),
        family=family,
        config_view=config_view or (lambda config: config),
    )


#: tensors llama.cpp's converter keeps in F32 whatever the output type (MoE routers)
ALWAYS_F32 = frozenset(
    {
        "blk.{bid}.ffn_gate_inp.weight",
        "blk.{bid}.ffn_gate_inp_shexp.weight",
        "blk.{bid}.shortconv.conv.weight",
    }
)


def plus_one(w: np.ndarray, _h: HParams) -> np.ndarray:
    """Gemma-style RMSNorm scales by (1 + w); llama.cpp's by w."""
    return w + np.float32(1.0)


def norm_weights(gguf_arch: str) -> list[str]:
    """Every norm weight (GGUF template with suffix) the architecture can have."""
    return sorted({f"{v}.weight" for v in tensor_table(gguf_arch).values() if v.endswith("norm")})


def permute_q(w: np.ndarray, h: HParams) -> np.ndarray:
    return decoder.permute_rows(w, decoder.n_head(h))


def permute_k(w: np.ndarray, h: HParams) -> np.ndarray:
    return decoder.permute_rows(w, decoder.n_head_kv(h))


#: Llama-style Q/K permutation for llama.cpp's "normal" RoPE
PERMUTE_QK: dict[str, Transform] = {
    "blk.{bid}.attn_q.weight": permute_q,
    "blk.{bid}.attn_q.bias": permute_q,
    "blk.{bid}.attn_k.weight": permute_k,
    "blk.{bid}.attn_k.bias": permute_k,
}


#: the language model of a multimodal checkpoint under its text-only names, in both the
#: hub layout (`language_model.model.*`) and transformers 5's (`model.language_model.*`)
TEXT_PART_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^language_model\.model\.", "model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^model\.language_model\.", "model."),
)
#: the vision tower and projector (llama.cpp's converter writes them to an mmproj file)
VISION_PARTS: tuple[str, ...] = (
    r"(model\.)?(vision_tower|vision_model|visual|multi_modal_projector|vision_embed_tokens)\..*",
)
