"""GlmOcrForConditionalGeneration's language model -> GGUF "glm4" (vision tower left out).

GLM-4's decoder: norms after attention and after the feed-forward as well as before,
gate and up projections fused (llama.cpp reads them fused as ffn_up), and RoPE on the
first part of each head (partial_rotary_factor) with its pairs interleaved. With
multimodal sections (`mrope_section`, as released) llama.cpp runs its multi-section RoPE,
which pairs the halves of the rotated part, so those rows of Q and K are reordered from
interleaved pairs to halves; text-only input gives every section the same position.
The multi-token-prediction block stored after the last layer is not converted.
"""

from __future__ import annotations

import numpy as np

from toolchain.convert.arch import decoder
from toolchain.convert.arch.qwen_vl import write_sections
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata


def _rotary(h: HParams) -> int:
    rope = decoder.rope_parameters(h)
    return int(decoder.head_dim(h) * float(rope.get("partial_rotary_factor", 0.5)))


def _halves(w: np.ndarray, h: HParams, heads: int) -> np.ndarray:
    """Per head, the rotated rows' interleaved pairs (0, 1), (2, 3)... as halves."""
    if not decoder.rope_parameters(h).get("mrope_section"):
        return w
    rot = _rotary(h)
    rows = w.reshape(heads, decoder.head_dim(h), -1)
    order = np.concatenate([rows[:, 0:rot:2], rows[:, 1:rot:2], rows[:, rot:]], axis=1)
    return order.reshape(w.shape)


def _q(w: np.ndarray, h: HParams) -> np.ndarray:
    return _halves(w, h, decoder.n_head(h))


def _k(w: np.ndarray, h: HParams) -> np.ndarray:
    return _halves(w, h, decoder.n_head_kv(h))


def _metadata(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    write_sections(h, md)
    md.u32("{arch}.rope.dimension_count", _rotary(h))
    if h.get("num_nextn_predict_layers", default=None) is not None:
        md.u32("{arch}.nextn_predict_layers", 0)  # the MTP block is left out


ARCH = text_arch(
    ("GlmOcrForConditionalGeneration",),
    "glm4",
    family="GLM-OCR (text)",
    metadata=_metadata,
    vocab=("bpe",),
    shapes={
        **{k: v for k, v in decoder.SHAPES.items() if "ffn_gate" not in k},
        "blk.{bid}.ffn_up.weight": lambda h: (2 * decoder.n_ff(h), decoder.n_embd(h)),
    },
    transforms={
        "blk.{bid}.attn_q.weight": _q,
        "blk.{bid}.attn_q.bias": _q,
        "blk.{bid}.attn_k.weight": _k,
        "blk.{bid}.attn_k.bias": _k,
    },
    text_part=True,
    extra_blocks_key="num_nextn_predict_layers",
    # as llama.cpp's converter names them for GLM-4 (turn end: the next user turn)
    special_tokens={"eot": "<|user|>", "bos": "<|endoftext|>", "unk": "<|endoftext|>"},
)
