"""Quantize and dequantize whole tensors: rows of `n` values, in chunks of rows so memory
stays bounded, with the checks llama.cpp makes on the way (finite input, divisible rows,
finite scales in the output)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from quant.errors import QuantError
from quant.formats import BlockFormat, block_format
from quant.numerics import F32, Bytes, Floats, element_major, seq_sum

#: values per chunk handed to a kernel (about 4 MB of float32)
CHUNK_ELEMS = 1 << 20


def as_rows(x: npt.ArrayLike) -> Floats:
    """`x` as float32 rows (ggml's ne[0] is the last axis); 1-D input is one row."""
    a = np.asarray(x, dtype=F32)
    if a.ndim == 0:
        raise QuantError("cannot quantize a scalar")
    return a.reshape(-1, a.shape[-1]) if a.ndim != 2 else a


def check_finite(x: Floats, tensor: str | None) -> None:
    # max and min are NaN if any value is, and +-inf if any value is
    if x.size and np.isfinite(x.max()) and np.isfinite(x.min()):
        return
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x.reshape(-1)))
        where = f"tensor {tensor!r}" if tensor else "input"
        raise QuantError(
            f"{where} has {bad.size} non-finite value(s) (first at flat index {int(bad[0])})",
            tensor=tensor,
            hint="fix the weights (NaN/Inf) before quantizing",
        )


def rows_per_chunk(n: int) -> int:
    return max(1, CHUNK_ELEMS // n)


def quantize_rows(fmt: BlockFormat, x: Floats, imatrix: Floats | None = None) -> Bytes:
    """Quantize a (rows, n) float32 chunk to (rows, row_bytes) uint8 (no checks)."""
    rows, n = x.shape
    per_row = n // fmt.block
    qw = sigma2 = None
    if imatrix is not None and fmt.uses_imatrix:
        qw = np.tile(imatrix.reshape(per_row, fmt.block), (rows, 1))
        if fmt.row_sigma:
            # `sum_x2/n_per_row`, summed along the row in C order
            sums = seq_sum(element_major(np.ascontiguousarray(x * x), n))
            sigma2 = np.repeat((sums / F32(n)).astype(F32), per_row)
    out = fmt.quantize_blocks(np.ascontiguousarray(x).reshape(-1, fmt.block), qw, sigma2)
    return out.reshape(rows, per_row * fmt.type_size)


def validate(fmt: BlockFormat, data: Bytes, tensor: str | None) -> None:
    """llama.cpp's `ggml_validate_row_data`: no inf/NaN in the fp16 (or bf16) fields."""
    blocks = np.ascontiguousarray(data).reshape(-1, fmt.type_size)
    if fmt.name == "BF16":
        bad = bool(((blocks.view("<u2") & 0x7FFF) >= 0x7F80).any())
    elif fmt.halves:
        # each fp16 field read in place, one strided uint16 per block (no gathering copy)
        nb, step = blocks.shape[0], fmt.type_size
        bad = any(
            (
                (np.ndarray((nb,), dtype="<u2", buffer=blocks, offset=at, strides=(step,)) & 0x7C00)
                == 0x7C00
            ).any()
            for a, b in fmt.halves
            for at in range(a, b, 2)
        )
    else:
        return
    if bad:
        where = f"tensor {tensor!r}" if tensor else "input"
        raise QuantError(
            f"{where} does not fit {fmt.name}: a scale overflows to inf (values too large)",
            tensor=tensor,
            hint="use a wider type for this tensor (e.g. F32), or rescale the weights",
        )


def quantize(
    type_name: str,
    x: npt.ArrayLike,
    imatrix: npt.ArrayLike | None = None,
    *,
    tensor: str | None = None,
) -> bytes:
    """Quantize `x` (rows along its last axis) to `type_name`, as llama.cpp's
    `ggml_quantize_chunk` would, optionally with an importance matrix (one weight per column).
    """
    fmt = block_format(type_name)
    rows = as_rows(x)
    n = rows.shape[1]
    if n % fmt.block:
        raise QuantError(
            f"rows of {n} values cannot be split into {fmt.name} blocks of {fmt.block}",
            tensor=tensor,
        )
    if imatrix is None and fmt.needs_imatrix:
        raise QuantError(
            f"{fmt.name} needs an importance matrix: ggml cannot quantize to it without one",
            tensor=tensor,
            hint="pass one weight per column (made with `mfc imatrix`)",
        )
    weights = None
    if imatrix is not None:
        weights = np.asarray(imatrix, dtype=F32).reshape(-1)
        if weights.size != n:
            raise QuantError(
                f"importance matrix has {weights.size} values, rows have {n}", tensor=tensor
            )
        check_finite(weights, tensor and f"{tensor} (imatrix)")
    check_finite(rows, tensor)
    step = rows_per_chunk(n)
    parts = []
    for a in range(0, rows.shape[0], step):
        out = quantize_rows(fmt, rows[a : a + step], weights)
        validate(fmt, out, tensor)
        parts.append(out.tobytes())
    return b"".join(parts)


def dequantize(
    type_name: str, data: bytes | npt.NDArray[np.uint8], shape: tuple[int, ...]
) -> Floats:
    """The float32 values of `data` (of `type_name`), shaped `shape` (numpy order)."""
    fmt = block_format(type_name)
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else np.asarray(data)
    count = int(np.prod(shape))
    if count % fmt.block or raw.size != count // fmt.block * fmt.type_size:
        raise QuantError(f"{raw.size} bytes are not {count} values of {fmt.name}")
    blocks = raw.reshape(-1, fmt.type_size)
    step = max(1, CHUNK_ELEMS // fmt.block)
    out = np.empty((blocks.shape[0], fmt.block), dtype=F32)
    for a in range(0, blocks.shape[0], step):
        out[a : a + step] = fmt.dequantize_blocks(np.ascontiguousarray(blocks[a : a + step]))
    return out.reshape(shape)
