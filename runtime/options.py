"""Model options: the reference's defaults, layered model params <- request `options`.

Names, types and defaults are `toolchain.frontend.parameters.ApiOptions` (the same table the
Modelfile's PARAMETER checks use); this module adds the reference's `Options.FromMap`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import ApiError
from toolchain.frontend.parameters import PARAMETERS, RUNNER_PARAMETERS, ApiOptions, ParamType

log = logging.getLogger("mfc.serve")

#: how the reference's type errors name each kind (`option "top_k" must be of type integer`)
_GO_KIND: dict[ParamType, str] = {
    "int": "integer", "float": "float32", "bool": "boolean", "string_list": "array",
}  # fmt: skip

#: option name -> Go kind, as in the reference's api.Options (runner options first).
OPTION_KINDS: dict[str, str] = {name: _GO_KIND[kind] for name, kind in PARAMETERS.items()}


@dataclass(frozen=True)
class Options(ApiOptions):
    """The merged options of one request (defaults are the reference's)."""

    def merged(self, values: Mapping[str, Any] | None) -> Options:
        """These options with `values` (a params layer or a request's `options`) on top.

        Unknown keys are ignored and null values skipped; a value of the wrong type is the
        reference's error (`option "top_k" must be of type integer`), status 500.
        """
        if not values:
            return self
        changes: dict[str, Any] = {}
        for key, value in values.items():
            kind = OPTION_KINDS.get(key)
            if kind is None:
                log.warning("invalid option provided: %s", key)
                continue
            if value is None:
                continue
            changes[key] = _coerce(key, kind, value)
        return dataclasses.replace(self, **changes)

    def runner_key(self) -> tuple[Any, ...]:
        """The runner options (`api.Runner`): a model loaded with other values is reloaded."""
        return tuple(getattr(self, name) for name in RUNNER_PARAMETERS)


def _coerce(key: str, kind: str, value: Any) -> Any:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        if not is_number:
            raise ApiError(500, f'option "{key}" must be of type integer')
        return int(value)
    if kind == "float32":
        if not is_number:
            raise ApiError(500, f'option "{key}" must be of type float32')
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ApiError(500, f'option "{key}" must be of type boolean')
        return value
    # the one array option, stop
    if not isinstance(value, list):
        raise ApiError(500, f'option "{key}" must be of type array')
    if not all(isinstance(item, str) for item in value):
        raise ApiError(500, f'option "{key}" must be of an array of strings')
    return tuple(value)


DEFAULT_OPTIONS = Options()
