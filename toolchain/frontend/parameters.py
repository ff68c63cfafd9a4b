"""PARAMETER names, their types, defaults and values, as the reference stores them (spec §1.8,
§1.9, store_api §3.2).

`ApiOptions` is the one table of options: the reference's `api.Options` (with the embedded
`api.Runner`) and its `DefaultOptions()`. `PARAMETERS` (name -> type) is derived from it for
the Modelfile checks; the runtime derives its request options and sampling defaults from it.
`parse_parameter_value` is the reference's `FormatParams` for one value. Also here: the
QUANTIZE types (mfc's extension): `quant`'s file types, in the Modelfile's spelling.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from quant.filetypes import FTYPE_NAMES
from toolchain.errors import MfcError, Span
from toolchain.frontend.go_strconv import parse_bool, parse_float32, parse_int64
from toolchain.ir import Parameter

ParamType = Literal["int", "float", "bool", "string_list"]
ParamValue = int | float | bool | list[str]


@dataclass(frozen=True)
class RunnerOptions:
    """The reference's `api.Runner`: options a model is loaded with (a change needs a reload)."""

    num_ctx: int = 0  # 0: the server's default context length
    num_batch: int = 512
    num_gpu: int = -1  # -1: as many layers as fit
    main_gpu: int = 0
    use_mmap: bool | None = None  # None: the loader decides
    num_thread: int = 0  # 0: the runtime's default
    draft_num_predict: int = 4  # the reference uses 0 when the model has no draft


@dataclass(frozen=True)
class ApiOptions(RunnerOptions):
    """The reference's `api.Options` with `DefaultOptions()`: one field per PARAMETER name.

    Go `int` fields are stored as int64, `float32` ones as floats rounded to float32, and
    `stop` (`[]string`) accumulates one string per PARAMETER line.
    """

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


def _param_type(annotation: object) -> ParamType:
    """A field's PARAMETER type from its annotation (`bool | None` is a Go `*bool`)."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = (a for a in typing.get_args(annotation) if a is not type(None))
    if annotation == tuple[str, ...]:
        return "string_list"
    kinds: dict[object, ParamType] = {int: "int", float: "float", bool: "bool"}
    return kinds[annotation]


_HINTS = typing.get_type_hints(ApiOptions)

#: name -> type, in the reference's field order (runner options first)
PARAMETERS: dict[str, ParamType] = {
    f.name: _param_type(_HINTS[f.name]) for f in dataclasses.fields(ApiOptions)
}

#: the options that need another runner when they change
RUNNER_PARAMETERS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunnerOptions))

#: accepted by the parser, skipped by `ollama create` with `warning: parameter <name> is deprecated`
DEPRECATED_PARAMETERS: tuple[str, ...] = (
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)


def modelfile_spelling(ftype: str) -> str:
    """A file type as QUANTIZE and `--quantize` spell it: `Q4_K_M` -> `q4_K_M`, `BF16` -> `bf16`."""
    head, sep, rest = ftype.partition("_")
    return head.lower() + sep + rest


#: QUANTIZE <type> (and --quantize): the quantizer's file types, matched case-insensitively
QUANTIZE_TYPES: tuple[str, ...] = tuple(modelfile_spelling(name) for name in FTYPE_NAMES)

_EXAMPLES: dict[ParamType, str] = {
    "int": "an integer, e.g. 4096",
    "float": "a number, e.g. 0.7",
    "bool": "true or false",
    "string_list": "a string",
}
_PARSERS = {"int": parse_int64, "float": parse_float32, "bool": parse_bool}
_GO_KIND = {"int": "int", "float": "float", "bool": "bool"}


class ParameterError(MfcError):
    """A PARAMETER the reference's `ollama create` rejects."""


class UnknownParameterError(ParameterError):
    """`unknown parameter '<name>'`."""


class InvalidParameterValueError(ParameterError):
    """`invalid int value [<v>]` (or float, bool)."""


def is_deprecated(name: str) -> bool:
    """The reference skips these names (with a warning) before typing any value."""
    return name in DEPRECATED_PARAMETERS


def suggest_parameter(name: str) -> str | None:
    """The known name `name` was probably meant to be, if any."""
    if name.lower() in PARAMETERS:
        return name.lower()
    close = difflib.get_close_matches(name.lower(), PARAMETERS, n=1, cutoff=0.6)
    return close[0] if close else None


def parse_parameter_value(name: str, raw: str, span: Span | None = None) -> ParamValue:
    """The value the reference stores for `PARAMETER <name> <raw>`: int64, float32-rounded
    float, bool, or `[raw]` for `stop`. Raises `ParameterError` with the reference's text."""
    kind = PARAMETERS.get(name)
    if kind is None:
        guess = suggest_parameter(name)
        hint = (
            f"did you mean {guess}?"
            if guess
            else "known parameters: " + ", ".join(sorted(PARAMETERS))
        )
        raise UnknownParameterError(f"unknown parameter '{name}'", span, hint)
    if kind == "string_list":
        return [raw]
    try:
        return _PARSERS[kind](raw)
    except ValueError:
        raise InvalidParameterValueError(
            f"invalid {_GO_KIND[kind]} value [{raw}]", span, f"{name} takes {_EXAMPLES[kind]}"
        ) from None


def collect_parameters(params: Iterable[Parameter]) -> tuple[dict[str, ParamValue], list[str]]:
    """Merge PARAMETERs as `ollama create` does: deprecated names skipped (their warnings
    returned), `stop` values appended in order, any other repeated name last-wins.
    Raises `ParameterError` at the first unknown name or bad value."""
    merged: dict[str, ParamValue] = {}
    warnings: list[str] = []
    for param in params:
        if is_deprecated(param.name):
            warnings.append(f"parameter {param.name} is deprecated")
            continue
        value = parse_parameter_value(param.name, param.value, param.value_span or param.span)
        previous = merged.get(param.name)
        if isinstance(value, list) and isinstance(previous, list):
            merged[param.name] = previous + value
        else:
            merged[param.name] = value
    return merged, warnings


def canonical_quantize_type(name: str) -> str | None:
    """The table's spelling of a QUANTIZE type given in any case, or None if unknown."""
    folded = name.lower()
    return next((t for t in QUANTIZE_TYPES if t.lower() == folded), None)


def unsupported_quantize_type(name: str) -> tuple[str, str] | None:
    """(message, hint) for a QUANTIZE or --quantize value that is no file type, else None."""
    if canonical_quantize_type(name) is not None:
        return None
    close = difflib.get_close_matches(
        name.lower(), [t.lower() for t in QUANTIZE_TYPES], n=1, cutoff=0.6
    )
    hint = (f"did you mean {canonical_quantize_type(close[0])}? " if close else "") + (
        "known types: " + ", ".join(QUANTIZE_TYPES)
    )
    return f"unsupported quantization type '{name}'", hint
