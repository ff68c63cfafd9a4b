"""Output types: which GGML type each tensor gets, and the float encodings themselves.

f32/f16 are encoded here (numpy's IEEE round-to-nearest-even, as ggml does), bf16 by
`quant.floats` (ggml's rounding); quantized output types are delegated to `quant`. Their
file-type ids come from `quant.filetypes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType

from quant.filetypes import FILE_TYPES
from quant.floats import quantize_bf16
from toolchain.convert.errors import ConvertError

T = GGMLQuantizationType


@dataclass(frozen=True, slots=True)
class OutType:
    name: str
    ggml: GGMLQuantizationType | None  # None: "auto", decided from the weights' dtype
    file_type: int
    quantize: str | None = None  # a quantization file type (quant's name), e.g. "Q4_K_M"
    #: matrices the checkpoint stores as BF16 stay BF16 (see `tensor_type`)
    keep_bf16: bool = False


#: --outtype values that need nothing but numpy
FLOAT_OUTTYPES: dict[str, OutType] = {
    "f32": OutType("f32", T.F32, FILE_TYPES["F32"].id),
    "f16": OutType("f16", T.F16, FILE_TYPES["F16"].id),
    "bf16": OutType("bf16", T.BF16, FILE_TYPES["BF16"].id),
    "auto": OutType("auto", None, FILE_TYPES["F16"].id),
    "ollama": OutType("ollama", T.F16, FILE_TYPES["F16"].id, keep_bf16=True),
}

#: tensors Ollama's converter writes F16 even from BF16 (vision, SAM-encoder and
#: projector tensors by prefix; the shared-expert gate by name)
_NOT_KEPT_BF16_PREFIXES = ("v.", "s.", "mm.")
_NOT_KEPT_BF16_NAME = "ffn_gate_inp_shexp.weight"


def resolve_outtype(name: str, first_weight_dtype: str | None) -> OutType:
    """The OutType for `--outtype name`; "auto" keeps bf16 weights bf16, else f16 (one
    choice for the whole file, by the first weight: llama.cpp's converter); "ollama" is F16
    with each BF16 matrix kept BF16 (Ollama's converter, see `tensor_type`).

    Quantization types (q8_0, q4_K_M, ...) come from `quant`."""
    from toolchain.convert.quantized import outtype_names, quantized_outtype

    key = name.lower()
    out = FLOAT_OUTTYPES.get(key) or quantized_outtype(name)
    if out is None:
        raise ConvertError(
            "--outtype",
            f"unknown output type {name!r}",
            hint="choose one of: " + ", ".join([*FLOAT_OUTTYPES, *outtype_names()]),
        )
    if out.ggml is None:
        return FLOAT_OUTTYPES["bf16" if first_weight_dtype == "BF16" else "f16"]
    return out


def tensor_type(
    out: OutType, gguf_name: str, n_dims: int, keep_f32: bool, source_dtype: str | None = None
) -> GGMLQuantizationType:
    """The type one tensor is written as: vectors, norms and listed tensors stay F32.

    With `out.keep_bf16`, a matrix whose checkpoint dtype (`source_dtype`) is BF16 stays
    BF16 unless Ollama's converter names it among those it writes F16 (its safetensors
    reader at the pinned commit); the file type stays F16 as that converter writes it."""
    assert out.ggml is not None
    if n_dims <= 1 or keep_f32 or gguf_name.endswith("_norm.weight"):
        return T.F32
    if not gguf_name.endswith((".weight", ".lora_a", ".lora_b")):
        return T.F32
    if (
        out.keep_bf16
        and source_dtype == "BF16"
        and not gguf_name.startswith(_NOT_KEPT_BF16_PREFIXES)
        and _NOT_KEPT_BF16_NAME not in gguf_name
    ):
        return T.BF16
    return out.ggml


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Safetensors data (BF16 as uint16 bits) as float32; F32 input is returned as is."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F32":
        return raw
    return raw.astype(np.float32)


_UNCHANGED = frozenset({("F16", T.F16), ("BF16", T.BF16), ("F32", T.F32)})


def encode(
    x: np.ndarray, raw: np.ndarray | None, dtype: str | None, ggml: GGMLQuantizationType
) -> np.ndarray:
    """`x` (float32) in the on-disk form of `ggml`. `raw`/`dtype` is the untouched source,
    used to skip the float32 round trip when the source already has the output type."""
    if raw is not None and (dtype, ggml) in _UNCHANGED:
        return raw
    if ggml == T.F32:
        return x.astype(np.float32, copy=False)
    if ggml == T.F16:
        return x.astype(np.float16)
    if ggml == T.BF16:
        return quantize_bf16(x)
    raise ConvertError("--outtype", f"cannot encode {ggml.name}")


def encoded_nbytes(shape: tuple[int, ...], ggml: GGMLQuantizationType) -> int:
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[ggml]
    n = int(np.prod(shape, dtype=np.int64))
    if shape and shape[-1] % block:
        raise ConvertError(
            "--outtype", f"rows of {shape[-1]} do not divide into {ggml.name} blocks of {block}"
        )
    return n // block * size
