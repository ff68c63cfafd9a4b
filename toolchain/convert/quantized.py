"""Quantized output types (`--outtype q4_K_M`, `q8_0`, ...), straight from the weights.

`quant` decides each tensor's type exactly as llama-quantize would for a file converted
to F16 (same mixture rules, same never-quantized tensors) and its kernels encode the
rows. The difference from convert-then-quantize is only that the kernels see the
checkpoint's own float32/bf16 values instead of an F16 copy of them.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from gguf import GGMLQuantizationType

from toolchain.convert.architecture import HParams
from toolchain.convert.errors import ConvertError
from toolchain.convert.outtype import FLOAT_OUTTYPES, OutType, encoded_nbytes
from toolchain.convert.writer import PlannedTensor


def quantized_outtype(name: str) -> OutType | None:
    """The OutType for a quantization file type name, or None if `name` is not one."""
    import quant

    try:
        ftype = quant.file_type(name)
    except quant.QuantError:
        return None
    if ftype.name.lower() in FLOAT_OUTTYPES:
        return FLOAT_OUTTYPES[ftype.name.lower()]
    # tensors the policy leaves alone keep what an F16 conversion gives them
    return OutType(ftype.name, GGMLQuantizationType.F16, ftype.id, quantize=ftype.name)


def outtype_names() -> tuple[str, ...]:
    import quant

    return tuple(n.lower() for n in quant.FTYPE_NAMES if n.lower() not in FLOAT_OUTTYPES)


def apply_policy(
    tensors: list[PlannedTensor], out: OutType, arch: str, hp: HParams, n_layer: int
) -> None:
    """Give each planned tensor the type llama-quantize would, and a kernel to encode it."""
    import quant
    from quant.formats import BY_ID
    from quant.gguf_read import TensorInfo
    from quant.policy import ModelFacts, plan_tensors

    assert out.quantize is not None
    n_head = hp.int("num_attention_heads", "n_head", "n_heads", default=0)
    facts = ModelFacts(
        arch, n_layer, n_head, hp.int("num_key_value_heads", "n_kv_heads", default=n_head)
    )
    infos = [
        TensorInfo(t.name, tuple(reversed(t.shape)), int(t.ggml), 0, i)
        for i, t in enumerate(tensors)
    ]
    plans = {p.tensor.name: p for p in plan_tensors(infos, facts, quant.file_type(out.quantize))}
    for t in tensors:
        plan = plans[t.name]
        if t.raw is not None:
            continue  # kept in its checkpoint encoding (MXFP4 experts)
        if plan.requires_imatrix:
            raise ConvertError(
                "--outtype",
                f"{out.name} needs an importance matrix",
                hint="convert to f16, then `mfc quantize --imatrix`",
            )
        if not plan.quantize:
            continue
        fmt = BY_ID[plan.target]
        t.ggml = GGMLQuantizationType(plan.target)
        t.nbytes = encoded_nbytes(t.shape, t.ggml)
        t.encoder = partial(_encode, fmt.name, t.name)


def _encode(type_name: str, tensor: str, x: np.ndarray) -> np.ndarray:
    import quant

    try:
        return np.frombuffer(quant.quantize(type_name, x, tensor=tensor), dtype=np.uint8)
    except quant.QuantError as exc:
        raise ConvertError(tensor, exc.message, hint=exc.hint) from None
