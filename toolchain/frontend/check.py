"""Semantic checks on the Modelfile IR: what `ollama create` would reject later, and what
it silently accepts but a user wants to hear about (spec §1.8, §1.9).

Errors are what the reference rejects (no FROM, unknown parameter, bad value, REQUIRES
not a version, bad MESSAGE role) plus an unknown QUANTIZE type and a QUANTIZE type that
needs an importance matrix without IMATRIX; warnings are what it
accepts quietly or with its own warning (deprecated parameters, an instruction repeated
where the last one wins, an empty FROM/ADAPTER/DRAFT).
"""

from __future__ import annotations

import re

from quant.filetypes import IMATRIX_REQUIRED
from toolchain.diagnostics import Diagnostic
from toolchain.errors import Span
from toolchain.frontend.errors import ERR_INVALID_MESSAGE_ROLE, ERR_MISSING_FROM, MESSAGE_ROLES
from toolchain.frontend.parameters import (
    PARAMETERS,
    ParameterError,
    canonical_quantize_type,
    is_deprecated,
    parse_parameter_value,
    unsupported_quantize_type,
)
from toolchain.frontend.parse import parse_recovering
from toolchain.frontend.template_check import check_templates
from toolchain.ir import (
    Adapter,
    Draft,
    From,
    Imatrix,
    Instruction,
    Message,
    Modelfile,
    Parameter,
    Parser,
    Quantize,
    Renderer,
    Requires,
    System,
    Template,
)

ERR_REQUIRES = "requires must be a valid semver (e.g. 0.14.0)"

#: instructions of which `ollama create` keeps only the last (FROM: the last name wins)
_LAST_WINS: tuple[type[Instruction], ...] = (
    From,
    Adapter,
    Template,
    System,
    Renderer,
    Parser,
    Requires,
    Quantize,
    Imatrix,
)
_PATH_VALUED: tuple[type[Instruction], ...] = (From, Adapter, Draft, Imatrix)

# golang.org/x/mod/semver.IsValid: vMAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]]
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v{_NUM}(?:\.{_NUM}(?:\.{_NUM}"
    rf"(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?"
    r")?)?"
)


def is_valid_requires(value: str) -> bool:
    """REQUIRES as `ollama create` checks it: `v` prefixed if missing, then semver.IsValid."""
    version = value if value.startswith("v") else "v" + value
    return _SEMVER.fullmatch(version) is not None


def check_modelfile(mf: Modelfile) -> list[Diagnostic]:
    """Every semantic diagnostic of `mf` (TEMPLATE checks included), in source order."""
    diags: list[Diagnostic] = []
    if not any(isinstance(ins, From) for ins in mf.instructions):
        diags.append(
            Diagnostic(
                "error",
                ERR_MISSING_FROM,
                Span(mf.path, 1, 1, 1, 2),
                "a Modelfile starts from a model: FROM <name>, a GGUF file or a safetensors folder",
            )
        )
    diags += _repeats(mf)
    diags += _check_imatrix(mf)
    for ins in mf.instructions:
        diags += _check_instruction(ins)
    diags += check_templates(mf)
    return sorted(diags, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))


def _value_span(ins: Instruction) -> Span:
    return ins.value_span or ins.span


def _check_instruction(ins: Instruction) -> list[Diagnostic]:
    if isinstance(ins, Parameter):
        return _check_parameter(ins)
    if isinstance(ins, Message) and ins.role not in MESSAGE_ROLES:
        return [
            Diagnostic(
                "error", ERR_INVALID_MESSAGE_ROLE, ins.span, "roles are system, user and assistant"
            )
        ]
    if isinstance(ins, Requires) and not is_valid_requires(ins.value):
        return [
            Diagnostic(
                "error",
                ERR_REQUIRES,
                _value_span(ins),
                "REQUIRES names the oldest Ollama version the model needs, e.g. 0.14.0",
            )
        ]
    if isinstance(ins, Quantize) and (problem := unsupported_quantize_type(ins.value)):
        return [Diagnostic("error", problem[0], _value_span(ins), problem[1])]
    if isinstance(ins, _PATH_VALUED) and not ins.value:
        keyword = ins.kind.upper()
        return [
            Diagnostic(
                "warning",
                f"{keyword} is empty, which means the Modelfile's folder",
                ins.span,
                f"write `{keyword} .` if that is what you mean",
            )
        ]
    return []


def _check_imatrix(mf: Modelfile) -> list[Diagnostic]:
    """QUANTIZE to a type that needs an importance matrix has an IMATRIX; IMATRIX has a
    QUANTIZE to serve (the last of each counts, as in the build)."""
    quantize = next((i for i in reversed(mf.instructions) if isinstance(i, Quantize)), None)
    imatrix = next((i for i in reversed(mf.instructions) if isinstance(i, Imatrix)), None)
    name = canonical_quantize_type(quantize.value) if quantize else None
    if quantize and name and name.upper() in IMATRIX_REQUIRED and imatrix is None:
        return [
            Diagnostic(
                "error",
                f"quantization type {name} needs an importance matrix",
                _value_span(quantize),
                "add IMATRIX <file>: an imatrix GGUF or .dat (`mfc imatrix`, llama-imatrix) or "
                "calibration text to compute one from",
            )
        ]
    if imatrix is not None and quantize is None:
        return [
            Diagnostic(
                "warning",
                "IMATRIX has no effect without QUANTIZE",
                imatrix.span,
                "add QUANTIZE <type>, or remove the line",
            )
        ]
    return []


def _check_parameter(param: Parameter) -> list[Diagnostic]:
    if is_deprecated(param.name):
        return [
            Diagnostic(
                "warning",
                f"parameter {param.name} is deprecated",
                param.span,
                "ollama create ignores it; remove the line",
            )
        ]
    try:
        parse_parameter_value(param.name, param.value)
    except ParameterError as err:
        where = _value_span(param) if param.name in PARAMETERS else _name_span(param)
        return [Diagnostic("error", err.message, where, err.hint)]
    return []


def _name_span(param: Parameter) -> Span:
    """The span of the name in `PARAMETER <name> ...` (one separator after the keyword)."""
    span = param.span
    col = span.col + len("PARAMETER ")
    return Span(span.file, span.line, col, span.line, col + max(len(param.name), 1))


def _repeats(mf: Modelfile) -> list[Diagnostic]:
    """A warning at each instruction that replaces an earlier one of the same kind."""
    diags: list[Diagnostic] = []
    seen: dict[str, Instruction] = {}
    for ins in mf.instructions:
        if isinstance(ins, _LAST_WINS):
            key, label = ins.kind, ins.kind.upper()
        elif isinstance(ins, Parameter) and PARAMETERS.get(ins.name) not in (None, "string_list"):
            key, label = "parameter " + ins.name, f"PARAMETER {ins.name}"
        else:
            continue
        previous = seen.setdefault(key, ins)
        if previous is ins:
            continue
        if isinstance(ins, From):
            hint = (
                "the last FROM names the model; FROM files are all added, as `ollama create` "
                "does (e.g. a vision projector); remove the FROM you do not want"
            )
        else:
            hint = f"the last {label} wins, as with `ollama create`; remove the one you do not want"
        diags.append(
            Diagnostic(
                "warning",
                f"{label} repeated: line {ins.span.line} replaces line {previous.span.line}",
                ins.span,
                hint,
            )
        )
        seen[key] = ins
    return diags


def check_source(data: bytes | str, path: str = "<stdin>") -> tuple[Modelfile, list[Diagnostic]]:
    """`mfc check` for one file's bytes: every syntax error (recovering line by line), then
    the semantic diagnostics of what parsed. "no FROM line" is left out when a syntax
    error may have swallowed the FROM."""
    mf, errors = parse_recovering(data, path)
    diags = [Diagnostic.from_error(err) for err in errors]
    diags += [d for d in check_modelfile(mf) if not (errors and d.message == ERR_MISSING_FROM)]
    return mf, sorted(diags, key=lambda d: (d.span.line, d.span.col) if d.span else (0, 0))
