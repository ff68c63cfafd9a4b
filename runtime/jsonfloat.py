"""Float arrays as Go's encoding/json writes them, fast: what Ollama sends for embeddings.

The reference's /api/embed and /v1/embeddings vectors are `[]float32` and its legacy
/api/embeddings vector is `[]float64`. Go writes each number as the shortest decimal that
reads back as the same float32 (or float64), positional unless its magnitude is under 1e-6
or at least 1e21, whole numbers without a fraction, and exponents without a leading zero.
Python's `json` writes a float32 widened to float64 with up to 17 digits (`0.0123456789180636`
for Go's `0.012345679`), twice the text, at about a microsecond a number on the event loop.

orjson writes a numpy array's shortest decimals in C; two differences from Go are mended on
its output: `1.0` is `1`, and the exponent form is used from 1e13 (float32; 1e16 float64) or
under 1e-5 (float64), where Go is still positional. Those numbers are looked for in the
text only when the array holds one (the search costs ~0.3 ms a vector of 384, and a
MiniLM vector always holds some tiny numbers that both write with an exponent).
"""

from __future__ import annotations

import re
from decimal import Decimal

import numpy as np
import orjson

_WHOLE = re.compile(rb"\.0(?=[,\]])")
_EXPONENT = re.compile(rb"(?<![0-9.])-?[0-9.]+e[-+][0-9]+")
_POSITIONAL_FROM: dict[np.dtype[np.floating], np.floating] = {
    np.dtype(np.float32): np.float32(1e-6),
    np.dtype(np.float64): np.float64(1e-6),
}
_EXPONENT_FROM = 1e21
#: orjson is positional within these bounds for both types (it is from 1e-5 to under 1e13)
_ORJSON_POSITIONAL = (1e-4, 1e12)


def go_json_floats(values: np.ndarray) -> bytes:
    """A finite float32 or float64 array (1-D or 2-D) as Go's `json.Marshal` writes the
    slice (of slices) of that type."""
    if values.dtype not in _POSITIONAL_FROM:
        raise TypeError(f"float32 or float64 expected, not {values.dtype}")
    text = orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY)
    low = _POSITIONAL_FROM[values.dtype]
    if b"e" in text and _may_differ(values, low):

        def positional(m: re.Match[bytes]) -> bytes:
            number = m.group(0)
            magnitude = abs(values.dtype.type(number.decode()))
            if magnitude < low or magnitude >= _EXPONENT_FROM:
                return number
            return format(Decimal(number.decode()), "f").encode()

        text = _EXPONENT.sub(positional, text)
    return _WHOLE.sub(b"", text)


def _may_differ(values: np.ndarray, low: np.floating) -> bool:
    """Whether a number may be written with an exponent by orjson but positionally by Go:
    one Go writes positionally (`low` <= |x| < 1e21) outside orjson's sure positional
    range."""
    magnitude = np.abs(values)
    go_positional = (magnitude >= low) & (magnitude < _EXPONENT_FROM)
    small, large = _ORJSON_POSITIONAL
    return bool(np.any(go_positional & ((magnitude < small) | (magnitude >= large))))


class RawJSON:
    """Bytes that `runtime.streaming.dumps` puts in its output as they are (already JSON)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data
