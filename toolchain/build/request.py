"""What a Modelfile asks for: the reference's create request, built from the IR.

This is `Modelfile.CreateRequest(relativeDir)` (modelfile_template.md §1.8-§1.11) plus
what the server does with it: FROM is a file, a folder or a model name; ADAPTER and DRAFT
must exist; TEMPLATE/SYSTEM/RENDERER/PARSER/REQUIRES last wins; LICENSE and MESSAGE
accumulate; PARAMETER values are typed as the reference stores them, `stop` accumulates.
Every field keeps the span of the instruction that set it, so later passes can point at it.
QUANTIZE is checked and normalised here, whoever builds the request (a Modelfile, `--quantize`,
`/api/create`): passes read `quantize` as the file type's upper-case name (`Q4_K_M`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from toolchain import ir
from toolchain.build.errors import BuildError
from toolchain.build.params import typed_parameters
from toolchain.build.sources import files_for_directory
from toolchain.errors import Span
from toolchain.frontend.check import ERR_REQUIRES, is_valid_requires
from toolchain.frontend.parameters import canonical_quantize_type, unsupported_quantize_type


@dataclass(frozen=True, slots=True)
class SourceFile:
    """An input file: `key` is the name the reference gives it (and the layer's `from`)."""

    key: str
    path: Path
    span: Span | None = None
    digest: str | None = None  # known when the file is already a blob (API requests)


@dataclass(frozen=True, slots=True)
class SourceDir:
    """A Hugging Face folder (safetensors) that the convert pass turns into a GGUF."""

    path: Path
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """The reference's `api.CreateRequest`, with spans, as the build passes consume it."""

    from_model: str = ""
    files: tuple[SourceFile, ...] = ()
    convert_dirs: tuple[SourceDir, ...] = ()
    adapters: tuple[SourceFile, ...] = ()
    adapter_dirs: tuple[SourceDir, ...] = ()
    draft_files: tuple[SourceFile, ...] = ()
    template: str = ""
    system: str = ""
    licenses: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: tuple[tuple[str, str], ...] = ()
    requires: str = ""
    renderer: str = ""
    parser: str = ""
    quantize: str = ""
    imatrix: SourceFile | None = None  # IMATRIX: an importance matrix or calibration text
    spans: dict[str, Span] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.quantize:
            object.__setattr__(
                self, "quantize", quantize_type(self.quantize, self.spans.get("quantize"))
            )

    def with_quantize(self, value: str) -> CreateRequest:
        """This request with `--quantize value` instead of its QUANTIZE (and its span)."""
        spans = {k: v for k, v in self.spans.items() if k != "quantize"}
        return replace(self, quantize=value, spans=spans)


def quantize_type(value: str, span: Span | None) -> str:
    """The file type's upper-case name (`Q4_K_M`) for a QUANTIZE/--quantize value."""
    problem = unsupported_quantize_type(value)
    if problem is not None:
        raise BuildError(problem[0], span, hint=problem[1])
    found = canonical_quantize_type(value)
    assert found is not None
    return found.upper()


def keyed(paths: list[tuple[Path, Span | None]]) -> tuple[SourceFile, ...]:
    """Name files as the reference's CLI does: one file by its base name, several relative
    to their common parent folder (slash-separated)."""
    if len(paths) == 1:
        path, span = paths[0]
        return (SourceFile(path.name, path, span),)
    parent = Path(os.path.commonpath([str(p.parent) for p, _ in paths])) if paths else Path()
    out = [
        SourceFile(PurePosixPath(*p.relative_to(parent).parts).as_posix(), p, span)
        for p, span in paths
    ]
    return tuple(sorted(out, key=lambda f: f.key))


def _expand(value: str, relative_dir: Path) -> Path:
    from toolchain.frontend.paths import expand_path

    return Path(expand_path(value, str(relative_dir)))


def request_from_modelfile(
    mf: ir.Modelfile, *, relative_dir: str | Path | None = None
) -> CreateRequest:
    """The create request for a parsed Modelfile; paths are relative to the Modelfile's folder.

    Raises `BuildError` (with the instruction's span) for a missing ADAPTER/DRAFT file, a
    folder with nothing to build from, a bad REQUIRES, or a DRAFT that is the FROM file.
    """
    base = Path(relative_dir) if relative_dir is not None else Path(mf.path).parent
    spans: dict[str, Span] = {}
    from_model = ""
    files: list[tuple[Path, Span | None]] = []
    convert_dirs: list[SourceDir] = []
    adapters: list[tuple[Path, Span | None]] = []
    adapter_dirs: list[SourceDir] = []
    drafts: list[tuple[Path, Span | None]] = []
    single: dict[str, str] = {}
    licenses: list[str] = []
    messages: list[tuple[str, str]] = []
    params: list[ir.Parameter] = []
    imatrix: SourceFile | None = None

    for ins in mf.instructions:
        span = ins.value_span or ins.span  # errors about a value point at the value
        if isinstance(ins, ir.From):
            path = _expand(ins.value, base)
            if not path.exists():
                from_model = ins.value
                spans["from"] = span
                continue
            if any(path.resolve() == d.resolve() for d, _ in drafts):
                raise BuildError(
                    f"DRAFT must not reference the same local path as FROM: {path}", span
                )
            spans["from"] = span
            if path.is_dir():
                found, hf_dir = files_for_directory(path, span)
                files.extend((p, span) for p in found)
                if hf_dir is not None:
                    convert_dirs.append(SourceDir(hf_dir, span))
            else:
                files.append((path, span))
        elif isinstance(ins, ir.Adapter | ir.Draft):
            label = "ADAPTER" if isinstance(ins, ir.Adapter) else "DRAFT"
            path = _expand(ins.value, base)
            if not path.exists():
                raise BuildError(
                    f"{label} file not found: {path}",
                    span,
                    hint=f"{label} takes a GGUF file path (relative to the Modelfile's folder)",
                )
            spans[label.lower()] = span
            if isinstance(ins, ir.Adapter):
                adapters, adapter_dirs = [], []  # the last ADAPTER wins, as in the reference
                if path.is_dir():
                    found, hf_dir = files_for_directory(path, span, adapter=True)
                    adapters = [(p, span) for p in found]
                    if hf_dir is not None:
                        adapter_dirs = [SourceDir(hf_dir, span)]
                else:
                    adapters = [(path, span)]
            else:
                if any(path.resolve() == f.resolve() for f, _ in files):
                    raise BuildError(
                        f"DRAFT must not reference the same local path as FROM: {path}", span
                    )
                if path.is_dir():
                    found, _ = files_for_directory(path, span)
                    drafts.extend((p, span) for p in found)
                else:
                    drafts.append((path, span))
        elif isinstance(ins, ir.Template | ir.System | ir.Renderer | ir.Parser | ir.Quantize):
            single[ins.command] = ins.value
            spans[ins.command] = span
        elif isinstance(ins, ir.Imatrix):
            path = _expand(ins.value, base)
            if not path.is_file():
                raise BuildError(
                    f"IMATRIX file not found: {path}"
                    if not path.exists()
                    else f"IMATRIX must name a file: {path}",
                    span,
                    hint="IMATRIX takes an imatrix GGUF/.dat or a calibration text file "
                    "(relative to the Modelfile's folder)",
                )
            imatrix = SourceFile(path.name, path, span)
            spans["imatrix"] = span
        elif isinstance(ins, ir.Requires):
            if not is_valid_requires(ins.value):
                raise BuildError(ERR_REQUIRES, span)
            single["requires"] = ins.value.removeprefix("v")
            spans["requires"] = span
        elif isinstance(ins, ir.License):
            licenses.append(ins.value)
        elif isinstance(ins, ir.Message):
            messages.append((ins.role, ins.value))
        elif isinstance(ins, ir.Parameter):
            params.append(ins)

    return CreateRequest(
        from_model=from_model,  # the reference prefers `from` over `files` when both are set
        files=keyed(files) if files else (),
        convert_dirs=tuple(convert_dirs),
        adapters=keyed(adapters) if adapters else (),
        adapter_dirs=tuple(adapter_dirs),
        draft_files=keyed(drafts) if drafts else (),
        template=single.get("template", ""),
        system=single.get("system", ""),
        licenses=tuple(licenses),
        parameters=typed_parameters(params),
        messages=tuple(messages),
        requires=single.get("requires", ""),
        renderer=single.get("renderer", ""),
        parser=single.get("parser", ""),
        quantize=single.get("quantize", ""),
        imatrix=imatrix,
        spans=spans,
    )
