"""Model options: the reference's defaults, layered model params <- request `options`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import ApiError

log = logging.getLogger("mfc.serve")

#: option name -> Go kind, as in the reference's api.Options (runner options first).
OPTION_KINDS: dict[str, str] = {
    "num_ctx": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "num_thread": "integer",
    "num_keep": "integer",
    "seed": "integer",
    "num_predict": "integer",
    "top_k": "integer",
    "top_p": "float32",
    "min_p": "float32",
    "typical_p": "float32",
    "repeat_last_n": "integer",
    "temperature": "float32",
    "repeat_penalty": "float32",
    "presence_penalty": "float32",
    "frequency_penalty": "float32",
    "stop": "array",
}

#: Options that change how a model is loaded: a different value needs another runner.
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")


@dataclass(frozen=True)
class Options:
    """The merged options of one request (defaults are the reference's)."""

    num_ctx: int = 0  # 0: the server's default context length
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int = 0
    use_mmap: bool | None = None
    num_thread: int = 0
    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()

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
        return tuple(getattr(self, name) for name in RUNNER_OPTIONS)


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
