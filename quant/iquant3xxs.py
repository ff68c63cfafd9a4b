"""IQ3_XXS: 256-element super-blocks of eight 32-element blocks; each group of four
magnitudes is a point of a 256-point lattice (`quant.lattice`), each group of eight has
seven sign bits (the eighth is implied by even parity, as in IQ2), and each block a 4-bit
scale (`quantize_row_iq3_xxs_impl` with grid size 256).

The search is IQ3_S's (`quant.iquant3s.block_search`) with 31 trial scales, re-snapping
only the groups that were off the lattice; the signs are IQ2's (`quant.iquant2`).
"""

from __future__ import annotations

import numpy as np

from quant.iquant2 import parity_signs, signed_values
from quant.iquant3s import block_search
from quant.kpack import half
from quant.lattice import iq3xxs_lattice
from quant.lattice_grids import IQ3XXS_DEQUANT_LEVELS
from quant.numerics import (
    F32,
    Bytes,
    Floats,
    column_slices,
    element_major,
    fp16_bytes,
    scale_nibbles,
    seq_sum,
)

_EPS = F32(1e-8)  # GROUP_MAX_EPS_IQ3_XXS
_SHIFTS = 3 * np.arange(4)
_MAGNITUDE = np.array(IQ3XXS_DEQUANT_LEVELS, dtype=F32)


def quantize_iq3_xxs(x: Floats, qw: Floats | None = None) -> Bytes:
    """(nblocks, 256) float32 -> (nblocks, 98) IQ3_XXS blocks."""
    lat = iq3xxs_lattice()
    nb = x.shape[0]
    X = element_major(x, 32)  # block b of super-block s is column 8*s + b
    if qw is None:
        W = (X * X).astype(F32)
    else:
        sumx2 = seq_sum(element_major(np.ascontiguousarray((x * x).astype(F32)), 256))
        sigma2 = (F32(2.0) * sumx2 / F32(256.0)).astype(F32)
        sig = np.repeat(sigma2, 8)[None, :]
        W = element_major(qw, 32) * np.sqrt((sig + (X * X).astype(F32)).astype(F32))
        W = W.astype(F32)
    B = X.shape[1]
    scale = np.empty(B, dtype=F32)
    grid = np.empty((8, B), dtype=np.int64)
    signs = np.empty((4, B), dtype=np.uint32)
    for sl in column_slices(32, B):
        Ws = np.ascontiguousarray(W[:, sl])
        xval, sg = parity_signs(np.ascontiguousarray(X[:, sl]), Ws)
        live = xval.max(axis=0) >= _EPS
        s, L = block_search(lat, xval, Ws, live, trials=15, off_grid_only=True)
        flip = s < 0
        sg[:, flip] = ~sg[:, flip] & 127
        sg[:, ~live] = 0
        scale[sl] = np.abs(s)
        g = lat.index[(L << _SHIFTS[None, :, None]).sum(axis=1)]
        grid[:, sl] = np.where(live, g, 0)
        signs[:, sl] = sg
    scales = scale.reshape(nb, 8)
    d, ls, ok = scale_nibbles(scales)
    s4 = signs.reshape(4, nb, 8)
    packed = s4[0] | (s4[1] << 7) | (s4[2] << 14) | (s4[3] << 21) | (ls << 28)
    out = np.zeros((nb, 98), dtype=np.uint8)
    qs = grid.reshape(8, nb, 8).transpose(1, 2, 0).reshape(nb, 64)  # byte 8*block + group
    out[:, 2:66] = np.where(ok[:, None], qs, 0)
    out[:, 66:98] = np.where(ok[:, None], packed.astype("<u4").view(np.uint8), 0)
    out[:, 0:2] = fp16_bytes(np.where(ok, (d * F32(1.0125)).astype(F32), F32(0.0)))
    return out


def dequantize_iq3_xxs(b: Bytes) -> Floats:
    lat = iq3xxs_lattice()
    nb = b.shape[0]
    d = half(b[:, 0:2])  # (nb, 1)
    qs = b[:, 2:66].reshape(nb, 8, 8).astype(np.int64)  # (nb, block, group of 4)
    aux = np.ascontiguousarray(b[:, 66:98]).view("<u4").astype(np.int64)  # (nb, 8)
    db = ((d * (F32(0.5) + (aux >> 28).astype(F32))).astype(F32) * F32(0.5)).astype(F32)
    vals = _MAGNITUDE[lat.values[qs] // 2].reshape(nb, 8, 4, 8)  # groups of eight
    bits = (aux[:, :, None] >> (7 * np.arange(4))) & 127
    out = signed_values(np.broadcast_to(db[:, :, None], bits.shape), vals, bits)
    return out.reshape(nb, 256)
