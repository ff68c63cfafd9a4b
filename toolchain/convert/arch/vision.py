"""Vision checkpoints (a text model + a vision encoder + a projector in one folder).

Each family has two entries: its text model, which is the text architecture's entry
reading the checkpoint's language-model tensors under their own prefix, and its
projector, which becomes a separate "clip" GGUF (`general.type` mmproj) as llama.cpp's
converter writes it with `--mmproj`: gguf-py's MMPROJ tensor names, the CLIP keys
(`clip.projector_type`, `clip.vision.*`) and the family's own keys and tensor types.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from toolchain.convert.arch import decoder, gemma3, llama, qwen2
from toolchain.convert.architecture import Architecture, HParams, Split, Transform
from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata

#: the (vision) config, the whole config.json and preprocessor_config.json
VisionMetadata = Callable[["VisionConfig", Metadata], None]


@dataclass(frozen=True)
class VisionConfig:
    """config.json's vision_config (`vision`), the file with its text_config over the top
    level (`top`), the file as it is (`whole`) and the image preprocessor's settings
    (preprocessor_config.json, then processor_config.json)."""

    vision: HParams
    top: HParams
    whole: HParams
    preprocessor: Mapping[str, Any]


@dataclass(frozen=True)
class Projector:
    """One family's projector GGUF."""

    hf_names: tuple[str, ...]
    family: str
    #: gguf.VisionProjectorType value written as `clip.projector_type`
    projector_type: str
    #: regex (whole HF name) of the tensors that belong to the projector GGUF
    keep: str
    #: the family's keys after the common ones
    metadata: VisionMetadata
    renames: tuple[tuple[str, str], ...] = ()
    skip: tuple[str, ...] = ()
    transforms: Mapping[str, Transform] = field(default_factory=dict)
    #: GGUF name -> its type given the output's (the reference's per-family exceptions)
    forced: Mapping[str, Callable[[T], T]] = field(default_factory=dict)
    #: extra or overriding HF name stem -> GGUF name stem
    names: Mapping[str, str] = field(default_factory=dict)
    #: HF tensor (GGUF template with suffix) -> the tensors it is cut into
    splits: Mapping[str, tuple[Split, ...]] = field(default_factory=dict)
    #: vision_config as the family's keys are read (renamed keys, defaults)
    vision_config: Callable[[dict[str, Any]], dict[str, Any]] = lambda v: v


def always(kind: T) -> Callable[[T], T]:
    return lambda _out: kind


def _f16_if_f16(out: T) -> T:
    """The reference's base rule for patch embeddings: F16 output keeps them F16, any
    other gives F32."""
    return T.F16 if out == T.F16 else T.F32


def common_metadata(c: VisionConfig, md: Metadata) -> None:
    """The keys every vision projector has, in the reference's order."""
    v = c.vision
    md.boolean("clip.has_vision_encoder", True)
    md.u32("clip.vision.projection_dim", c.top.int("hidden_size", "n_embd"))
    md.u32("clip.vision.image_size", v.int("image_size"))
    md.u32("clip.vision.patch_size", v.int("patch_size"))
    md.u32("clip.vision.embedding_length", v.int("hidden_size", "width"))
    md.u32("clip.vision.feed_forward_length", v.int("intermediate_size"))
    md.u32("clip.vision.block_count", v.int("num_hidden_layers", "n_layers", "depth"))
    md.u32("clip.vision.attention.head_count", v.int("num_attention_heads", "num_heads"))
    md.f32s("clip.vision.image_mean", [float(x) for x in c.preprocessor["image_mean"]])
    md.f32s("clip.vision.image_std", [float(x) for x in c.preprocessor["image_std"]])


def _gemma3(c: VisionConfig, md: Metadata) -> None:
    md.string("clip.projector_type", gguf.VisionProjectorType.GEMMA3)
    md.f32(
        "clip.vision.attention.layer_norm_epsilon", c.vision.float("layer_norm_eps", default=1e-6)
    )
    md.boolean("clip.use_gelu", True)
    # tokens per image = (patches a side / scale)^2; written only when not Gemma 3's 4
    per_side = math.isqrt(int(c.preprocessor.get("image_seq_length", 256)))
    scale = (c.vision.int("image_size") // c.vision.int("patch_size")) // max(per_side, 1)
    if scale > 0 and scale != 4:
        md.u32("clip.vision.projector.scale_factor", scale)


def _idefics3(c: VisionConfig, md: Metadata) -> None:
    md.string("clip.projector_type", gguf.VisionProjectorType.IDEFICS3)
    md.f32(
        "clip.vision.attention.layer_norm_epsilon", c.vision.float("layer_norm_eps", default=1e-5)
    )
    md.u32("clip.vision.projector.scale_factor", c.top.int("scale_factor", default=2))
    md.boolean("clip.use_gelu", True)
    size = c.preprocessor.get("size", {})
    longest = size.get("longest_edge") if isinstance(size, dict) else None
    md.u32(
        "clip.vision.preproc_image_size",
        int(longest) if longest is not None else c.vision.int("image_size"),
    )


def _plus_one(w: np.ndarray, _h: HParams) -> np.ndarray:
    return w + np.float32(1.0)


GEMMA3 = Projector(
    hf_names=("Gemma3ForConditionalGeneration",),
    family="Gemma 3 (vision)",
    projector_type=gguf.VisionProjectorType.GEMMA3,
    keep=r"(multi_modal_projector|vision_tower)\..*",
    metadata=_gemma3,
    # the projector's input projection is a bare parameter (`..._weight`)
    renames=((r"_weight$", ".weight"),),
    skip=(r"vision_tower\.vision_model\.head\..*",),  # SigLIP's pooling head: unused
    transforms={"mm.soft_emb_norm.weight": _plus_one},  # Gemma's RMSNorm scales by 1 + w
    # llama.cpp's issue 13025: the projection stays F16, the patch embedding F32
    forced={"mm.input_projection.weight": always(T.F16), "v.patch_embd.weight": always(T.F32)},
)

IDEFICS3 = Projector(
    hf_names=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
    family="Idefics3 / SmolVLM (vision)",
    projector_type=gguf.VisionProjectorType.IDEFICS3,
    keep=r"model\.(vision_model|connector)\..*",
    metadata=_idefics3,
    forced={"v.patch_embd.weight": always(T.F32)},  # the reference keeps `.embeddings.` F32
)


def _qwen2vl_config(v: dict[str, Any]) -> dict[str, Any]:
    """Qwen2-VL's vision keys under the common names, as the reference reads them: its
    `embed_dim` is the width and its `hidden_size` (the merger's output) is recorded as
    the feed-forward length."""
    out = {
        **v,
        "image_size": v.get("image_size", 560),
        "num_attention_heads": v.get("num_heads"),
        "num_hidden_layers": v.get("depth"),
    }
    if "embed_dim" in v:
        out["intermediate_size"] = v.get("hidden_size")
        out["hidden_size"] = v["embed_dim"]
    return out


def _qwen2vl(c: VisionConfig, md: Metadata) -> None:
    md.string("clip.projector_type", gguf.VisionProjectorType.QWEN2VL)
    md.f32("clip.vision.attention.layer_norm_epsilon", c.whole.float("rms_norm_eps", default=1e-6))


def _thirds(i: int) -> Split:
    """Part `i` of a fused QKV (rows q, then k, then v)."""

    def shape(s: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
        return (s[0] // 3, *s[1:])

    def cut(w: np.ndarray, _h: HParams) -> np.ndarray:
        n = w.shape[0] // 3
        return w[i * n : (i + 1) * n]

    return Split(f"v.blk.{{bid}}.attn_{'qkv'[i]}.{{suffix}}", shape, cut)


def _temporal(i: int) -> Split:
    """Frame `i` of the Conv3D patch embedding (2 frames a patch), a Conv2D each."""

    def shape(s: tuple[int, ...], _h: HParams) -> tuple[int, ...]:
        return (s[0], s[1], *s[3:])

    def cut(w: np.ndarray, _h: HParams) -> np.ndarray:
        return w[:, :, i]

    return Split("v.patch_embd.weight" + (f".{i}" if i else ""), shape, cut)


def _qkv_splits() -> dict[str, tuple[Split, ...]]:
    out = {}
    for suffix in ("weight", "bias"):
        parts = tuple(_thirds(i) for i in range(3))
        out[f"v.blk.{{bid}}.attn_qkv.{suffix}"] = tuple(
            Split(p.gguf.replace("{suffix}", suffix), p.shape, p.transform) for p in parts
        )
    return out


QWEN2VL = Projector(
    hf_names=("Qwen2VLForConditionalGeneration",),
    family="Qwen2-VL (vision)",
    projector_type=gguf.VisionProjectorType.QWEN2VL,
    keep=r"visual\..*",
    metadata=_qwen2vl,
    # the merger's MLP is numbered like a block (mlp.0, mlp.2): named apart from blocks
    renames=(
        (r"^model\.visual\.", "visual."),
        (r"^visual\.merger\.mlp\.(\d+)\.", r"visual.merger.mlp_\1."),
    ),
    names={"visual.merger.mlp_0": "mm.0", "visual.merger.mlp_2": "mm.2"},
    splits={**_qkv_splits(), "v.patch_embd.weight": (_temporal(0), _temporal(1))},
    forced={"v.patch_embd.weight": _f16_if_f16, "v.patch_embd.weight.1": _f16_if_f16},
    vision_config=_qwen2vl_config,
)


def _qwen25vl(c: VisionConfig, md: Metadata) -> None:
    md.string("clip.projector_type", gguf.VisionProjectorType.QWEN25VL)
    md.boolean("clip.use_silu", True)
    # window attention everywhere but every n-th block, which attends to the whole image
    full = c.vision.get("fullatt_block_indexes")
    if not isinstance(full, list) or not full or not all(isinstance(i, int) for i in full):
        raise ConvertError(
            c.vision.path,
            'Qwen2.5-VL\'s vision_config needs "fullatt_block_indexes" (a list of block numbers)',
        )
    pattern = full[0] + 1
    if any(b - a != pattern for a, b in itertools.pairwise(full)):
        raise ConvertError(
            c.vision.path,
            f"fullatt_block_indexes {full} are not evenly "
            "spaced, which llama.cpp's window-attention pattern requires",
        )
    md.u32("clip.vision.n_wa_pattern", pattern)
    md.f32("clip.vision.attention.layer_norm_epsilon", c.whole.float("rms_norm_eps", default=1e-6))


QWEN25VL = dataclasses.replace(
    QWEN2VL,
    hf_names=("Qwen2_5_VLForConditionalGeneration",),
    family="Qwen2.5-VL (vision)",
    projector_type=gguf.VisionProjectorType.QWEN25VL,
    metadata=_qwen25vl,
)

PROJECTORS: tuple[Projector, ...] = (GEMMA3, IDEFICS3, QWEN2VL, QWEN25VL)


def _text_of(
    arch: Architecture,
    *,
    hf_names: tuple[str, ...],
    family: str,
    renames: tuple[tuple[str, str], ...],
    vision: str,
) -> Architecture:
    """`arch` reading a vision checkpoint's language model: the vision tensors dropped,
    the language model's prefix taken off."""
    return dataclasses.replace(
        arch,
        hf_names=hf_names,
        family=family,
        renames=(*renames, *arch.renames),
        skip=(*arch.skip, vision),
    )


GEMMA3_TEXT = _text_of(
    gemma3.ARCH,
    hf_names=GEMMA3.hf_names,
    family="Gemma 3 (vision: text model)",
    renames=(
        (r"^language_model\.model\.", "model."),
        (r"^language_model\.lm_head", "lm_head"),
        (r"^model\.language_model\.", "model."),
    ),
    vision=r"(multi_modal_projector|vision_tower|model\.vision_tower|"
    r"model\.multi_modal_projector)\..*",
)

IDEFICS3_TEXT = _text_of(
    llama.ARCH,
    hf_names=IDEFICS3.hf_names,
    family="Idefics3 / SmolVLM (vision: text model)",
    renames=((r"^model\.text_model\.", "model."),),
    vision=r"model\.(vision_model|connector)\..*",
)


def _qwen2vl_text(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    sections = [int(x) for x in decoder.rope_parameters(h).get("mrope_section", [])]
    md.i32s("{arch}.rope.dimension_sections", [*sections, 0, 0, 0, 0][:4])


QWEN2VL_TEXT = dataclasses.replace(
    _text_of(
        qwen2.ARCH,
        hf_names=(*QWEN2VL.hf_names, *QWEN25VL.hf_names),
        family="Qwen2-VL / Qwen2.5-VL (vision: text model)",
        renames=((r"^model\.language_model\.", "model."),),
        vision=r"(model\.)?visual\..*",
    ),
    gguf_arch="qwen2vl",
    metadata=_qwen2vl_text,
)

TEXT_MODELS: tuple[Architecture, ...] = (GEMMA3_TEXT, IDEFICS3_TEXT, QWEN2VL_TEXT)


def projector_for(hf_name: str) -> Projector | None:
    """The projector entry of a vision checkpoint's architecture, None for a text model."""
    return next((p for p in PROJECTORS if hf_name in p.hf_names), None)
