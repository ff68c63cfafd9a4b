"""MXFP4 expert weights (GPT-OSS as released) kept as they are: OpenAI's blocks + scales
repacked into ggml's MXFP4 blocks, no dequantization.

A checkpoint stores `<name>_blocks` (uint8 [..., rows, n_blocks, 16], two 4-bit codes
per byte, element 2k in the low nibble of byte k) and `<name>_scales` (uint8 [..., rows,
n_blocks], an E8M0 exponent per 32 elements). ggml's block is the exponent byte
followed by 16 bytes holding element j in the low nibble and element j + 16 in the high
nibble of byte j; the exponent and the 4-bit codes mean the same in both.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from gguf import GGMLQuantizationType

from toolchain.convert.architecture import Architecture, HParams, map_tensor_name
from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.outtype import encoded_nbytes
from toolchain.convert.safetensors_file import TensorEntry
from toolchain.convert.writer import PlannedTensor

MXFP4 = GGMLQuantizationType.MXFP4


def is_mxfp4_part(name: str, entry: TensorEntry) -> bool:
    return entry.dtype == "U8" and name.endswith(("_blocks", "_scales"))


def ggml_blocks(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """OpenAI MXFP4 blocks + scales -> ggml MXFP4 blocks ([..., n_blocks, 17] uint8)."""
    codes = np.stack([blocks & 0x0F, blocks >> 4], axis=-1).reshape(*blocks.shape[:-1], 32)
    packed = codes[..., :16] | (codes[..., 16:] << 4)
    return np.concatenate([scales[..., None], packed], axis=-1)


def plan_mxfp4(hf: HFDir, arch: Architecture, hp: HParams) -> list[PlannedTensor]:
    """The MXFP4 tensors of the checkpoint, each to be written from its blocks + scales."""
    out: list[PlannedTensor] = []
    for name, blocks in hf.tensors.items():
        if not (blocks.dtype == "U8" and name.endswith("_blocks")):
            continue
        base = name.removesuffix("_blocks")
        scales = hf.tensors.get(base + "_scales")
        if (
            scales is None
            or len(blocks.shape) < 2
            or blocks.shape[-1] != 16
            or tuple(scales.shape) != tuple(blocks.shape[:-1])
        ):
            raise ConvertError(
                blocks.file.path,
                f"tensor {name!r}: MXFP4 blocks need "
                f"{base}_scales of shape {list(blocks.shape[:-1])}",
            )
        mapped = map_tensor_name(arch, base)
        if mapped is None:
            continue
        rows = arch.mxfp4_rows.get(mapped.template, ((mapped.template, slice(None)),))
        for template, pick in rows:
            gguf_name = template.replace("{bid}", str(mapped.bid))
            n_rows = len(range(*pick.indices(blocks.shape[-3])))
            shape = (*blocks.shape[:-3], n_rows, blocks.shape[-2] * 32)
            out.append(
                PlannedTensor(
                    gguf_name,
                    shape,
                    MXFP4,
                    encoded_nbytes(shape, MXFP4),
                    raw=partial(_read, blocks, scales, pick),
                )
            )
    return out


def _read(blocks: TensorEntry, scales: TensorEntry, pick: slice) -> np.ndarray:
    data = blocks.file.array(blocks)[..., pick, :, :]
    exps = scales.file.array(scales)[..., pick, :]
    return np.ascontiguousarray(ggml_blocks(data, exps))
