"""The block formats mfc writes, as one table: ggml type id, block size, bytes per block,
and the kernels that quantize and dequantize whole arrays of blocks."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quant.errors import QuantError
from quant.numerics import Bytes, Floats

#: kernel signature: blocks (nblocks, block) float32, per-block importance weights or
#: None, per-block row statistic (legacy imatrix path) or None -> (nblocks, type_size) uint8
BlockQuantizer = Callable[[Floats, Floats | None, Floats | None], Bytes]


@dataclass(frozen=True, slots=True)
class BlockFormat:
    name: str
    type_id: int
    block: int
    type_size: int
    quantize_blocks: BlockQuantizer
    dequantize_blocks: Callable[[Bytes], Floats]
    uses_imatrix: bool = False
    #: the legacy importance path also needs sum(x*x)/n over the whole row
    row_sigma: bool = False
    #: byte ranges of each block holding fp16 scales (F16/BF16: the values themselves),
    #: which must stay finite (llama.cpp's `ggml_validate_row_data`)
    halves: tuple[tuple[int, int], ...] = ()
    #: ggml refuses to quantize without importance weights (`ggml_quantize_requires_imatrix`)
    needs_imatrix: bool = False

    @property
    def quantized(self) -> bool:
        return self.block > 1

    def row_bytes(self, n: int) -> int:
        return n // self.block * self.type_size


class _Kernel:
    """`quant.<module>.<function>`, imported on its first call: the i-quant modules build
    lattice tables when imported (~7 ms of every `mfc quantize` start-up otherwise), and a
    command uses a few of the kernels at most."""

    __slots__ = ("function", "module")

    def __init__(self, module: str, function: str) -> None:
        self.module, self.function = module, function

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(f"quant.{self.module}"), self.function)(*args)


class _Module:
    """`_F.quantize_f32` names the kernel `quant.floats.quantize_f32` without importing it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, function: str) -> _Kernel:
        return _Kernel(self.name, function)


def _plain(fn: Callable[[Floats], Bytes]) -> BlockQuantizer:
    return lambda x, qw, sigma2: fn(x)


def _kquant(fn: Callable[[Floats, Floats | None], Bytes]) -> BlockQuantizer:
    return lambda x, qw, sigma2: fn(x, qw)


_F, _L = _Module("floats"), _Module("legacy")
kquant_low, kquant_mid, kquant_q6 = (
    _Module("kquant_low"),
    _Module("kquant_mid"),
    _Module("kquant_q6"),
)
iquant1, iquant1m, iquant2 = _Module("iquant1"), _Module("iquant1m"), _Module("iquant2")
iquant2s, iquant3s = _Module("iquant2s"), _Module("iquant3s")
iquant3xxs, iquant4 = _Module("iquant3xxs"), _Module("iquant4")
_TABLE = (
    BlockFormat("F32", 0, 1, 4, _plain(_F.quantize_f32), _F.dequantize_f32),
    BlockFormat("F16", 1, 1, 2, _plain(_F.quantize_f16), _F.dequantize_f16, halves=((0, 2),)),
    BlockFormat("Q4_0", 2, 32, 18, _L.quantize_q4_0, _L.dequantize_q4_0, True, True, ((0, 2),)),
    BlockFormat("Q4_1", 3, 32, 20, _L.quantize_q4_1, _L.dequantize_q4_1, True, True, ((0, 4),)),
    BlockFormat("Q5_0", 6, 32, 22, _L.quantize_q5_0, _L.dequantize_q5_0, True, True, ((0, 2),)),
    BlockFormat("Q5_1", 7, 32, 24, _L.quantize_q5_1, _L.dequantize_q5_1, True, True, ((0, 4),)),
    BlockFormat("Q8_0", 8, 32, 34, _plain(_L.quantize_q8_0), _L.dequantize_q8_0, halves=((0, 2),)),
    BlockFormat(
        "Q2_K",
        10,
        256,
        84,
        _kquant(kquant_low.quantize_q2_k),
        kquant_low.dequantize_q2_k,
        True,
        halves=((80, 84),),
    ),
    BlockFormat(
        "Q3_K",
        11,
        256,
        110,
        _kquant(kquant_low.quantize_q3_k),
        kquant_low.dequantize_q3_k,
        True,
        halves=((108, 110),),
    ),
    BlockFormat(
        "Q4_K",
        12,
        256,
        144,
        _kquant(kquant_mid.quantize_q4_k),
        kquant_mid.dequantize_q4_k,
        True,
        halves=((0, 4),),
    ),
    BlockFormat(
        "Q5_K",
        13,
        256,
        176,
        _kquant(kquant_mid.quantize_q5_k),
        kquant_mid.dequantize_q5_k,
        True,
        halves=((0, 4),),
    ),
    BlockFormat(
        "Q6_K",
        14,
        256,
        210,
        _kquant(kquant_q6.quantize_q6_k),
        kquant_q6.dequantize_q6_k,
        True,
        halves=((208, 210),),
    ),
    BlockFormat(
        "IQ2_XXS",
        16,
        256,
        66,
        _kquant(iquant2.quantize_iq2_xxs),
        iquant2.dequantize_iq2_xxs,
        True,
        halves=((0, 2),),
        needs_imatrix=True,
    ),
    BlockFormat(
        "IQ2_XS",
        17,
        256,
        74,
        _kquant(iquant2.quantize_iq2_xs),
        iquant2.dequantize_iq2_xs,
        True,
        halves=((0, 2),),
        needs_imatrix=True,
    ),
    BlockFormat(
        "IQ3_XXS",
        18,
        256,
        98,
        _kquant(iquant3xxs.quantize_iq3_xxs),
        iquant3xxs.dequantize_iq3_xxs,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ1_S",
        19,
        256,
        50,
        _kquant(iquant1.quantize_iq1_s),
        iquant1.dequantize_iq1_s,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ4_NL",
        20,
        32,
        18,
        _kquant(iquant4.quantize_iq4_nl),
        iquant4.dequantize_iq4_nl,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ3_S",
        21,
        256,
        110,
        _kquant(iquant3s.quantize_iq3_s),
        iquant3s.dequantize_iq3_s,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ2_S",
        22,
        256,
        82,
        _kquant(iquant2s.quantize_iq2_s),
        iquant2s.dequantize_iq2_s,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ4_XS",
        23,
        256,
        136,
        _kquant(iquant4.quantize_iq4_xs),
        iquant4.dequantize_iq4_xs,
        True,
        halves=((0, 2),),
    ),
    BlockFormat(
        "IQ1_M",
        29,
        256,
        56,
        _kquant(iquant1m.quantize_iq1_m),
        iquant1m.dequantize_iq1_m,
        True,
    ),
    BlockFormat("BF16", 30, 1, 2, _plain(_F.quantize_bf16), _F.dequantize_bf16),
)

FORMATS: dict[str, BlockFormat] = {f.name: f for f in _TABLE}
BY_ID: dict[int, BlockFormat] = {f.type_id: f for f in _TABLE}
TYPE_NAMES: tuple[str, ...] = tuple(f.name for f in _TABLE)


def block_format(name: str) -> BlockFormat:
    """The format called `name` (case-insensitive, e.g. "q4_k", "Q8_0", "bf16")."""
    fmt = FORMATS.get(name.upper())
    if fmt is None:
        raise QuantError(
            f"unknown tensor type {name!r}",
            hint="tensor types: " + ", ".join(TYPE_NAMES),
        )
    return fmt
