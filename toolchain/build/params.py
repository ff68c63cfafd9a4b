"""PARAMETER values as the reference stores them in the params layer.

The front end types each value the way the reference's CLI does (`api.FormatParams`:
int64, float32, bool, []string; `stop` accumulates, other names last-win). The CLI then
sends them as JSON and the server decodes them into `map[string]any`, so what reaches the
params blob is a float64 for every number, a float32 entering as its shortest decimal
form. This module applies that last step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from toolchain import ir
from toolchain.build.errors import BuildError
from toolchain.frontend.parameters import PARAMETERS, ParameterError, collect_parameters


def float32_as_json(x: float) -> float:
    """The float64 a float32 becomes after a JSON round trip: its shortest decimal form."""
    return float(str(np.float32(x)))


def as_stored(name: str, value: Any) -> Any:
    """One typed PARAMETER value as the server decodes it from the request JSON."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return float32_as_json(value) if PARAMETERS.get(name) == "float" else value
    raise TypeError(f"unsupported parameter value {value!r}")


def typed_parameters(params: Iterable[ir.Parameter]) -> dict[str, Any]:
    """The `parameters` of the create request, ready for the Go-JSON encoder."""
    try:
        merged, _warnings = collect_parameters(params)  # the front end reports the warnings
    except ParameterError as exc:
        raise BuildError(exc.message, exc.span, hint=exc.hint) from None
    return {name: as_stored(name, value) for name, value in merged.items()}
