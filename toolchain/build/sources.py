"""What a set of source files is: one classification for `mfc build` and `/api/create`.

A FROM or ADAPTER folder (`mfc build`) and the files of a create request (`/api/create`,
keyed by their path relative to the folder they came from) go through the same table, the
reference's `filesForModel` groups: the first group that matches wins. Safetensors weights
(`model*.safetensors`, then `consolidated*.safetensors`; for an adapter
`adapter_model*.safetensors` first) make the files a Hugging Face folder for the convert
pass; PyTorch checkpoints are refused; otherwise `*.gguf` files (whatever they hold:
resolve checks them), then binary `*.bin` files, are the GGUF weights. Files no group
takes are then classified as the reference's server does (`detectModelTypeFromFiles`):
any `.safetensors` file means a folder to convert, any file that starts with the GGUF
magic is a weight. Config, tokenizer and template files never decide; they go along with
a folder that is converted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from toolchain.build.errors import BuildError
from toolchain.errors import Span

ERR_MODEL_NOT_FOUND = "no Modelfile or safetensors files found"

SourceKind = Literal["safetensors", "pytorch", "gguf"]


class ModelNotFoundError(BuildError):
    """The reference's `ErrModelNotFound`: no model weights among the files."""


@dataclass(frozen=True, slots=True)
class Classified:
    """What a set of files holds: `weights` are the keys of the group that decided `kind`."""

    kind: SourceKind
    weights: tuple[str, ...]

    @property
    def convert(self) -> bool:
        """The files are a Hugging Face folder for the convert pass."""
        return self.kind == "safetensors"


# (kind, patterns, the sniffed content type every match must have, or None for any).
# Patterns match a whole slash-separated key, `*` within one path element (Go's Glob).
_ADAPTER_GROUPS: tuple[tuple[SourceKind, tuple[str, ...], str | None], ...] = (
    ("safetensors", ("adapter_model.safetensors", "adapter_model*.safetensors"), None),
)
_WEIGHT_GROUPS: tuple[tuple[SourceKind, tuple[str, ...], str | None], ...] = (
    ("safetensors", ("model*.safetensors", "*/model*.safetensors"), None),
    ("safetensors", ("consolidated*.safetensors",), None),
    ("pytorch", ("pytorch_model*.bin",), "application/zip"),
    ("pytorch", ("consolidated*.pth",), "application/zip"),
    # The reference skips a text `*.gguf` here; taking it lets resolve say what is wrong
    # with it (a git-lfs pointer is not a GGUF) instead of "no ... files found".
    ("gguf", ("*.gguf",), None),
    ("gguf", ("*.bin",), "application/octet-stream"),
)
_GGUF_MAGIC = (b"GGUF", b"FUGG")  # little- and big-endian files
_BINARY = (
    frozenset(range(0x00, 0x09)) | {0x0B} | frozenset(range(0x0E, 0x1B)) | {0x1C, 0x1D, 0x1E, 0x1F}
)
_MARKUP = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV",
           b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P",
           b"<!--")  # fmt: skip
_MAGICS = ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
           (b"\xfe\xff", "text/plain"), (b"\xff\xfe", "text/plain"),
           (b"\xef\xbb\xbf", "text/plain"), (b"\x1f\x8b\x08", "application/x-gzip"),
           (b"PK\x03\x04", "application/zip"))  # fmt: skip


def sniff(data: bytes) -> str:
    """Go's `http.DetectContentType` without parameters, for the types model folders hold:
    markup and document signatures, BOMs, zip/gzip, then text vs binary."""
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for tag in _MARKUP:
        if upper.startswith(tag) and stripped[len(tag) : len(tag) + 1] in (b" ", b">"):
            return "text/html"
    if stripped.startswith(b"<?xml"):
        return "text/xml"
    for magic, kind in _MAGICS:
        if data.startswith(magic):
            return kind
    if any(b in _BINARY for b in data):
        return "application/octet-stream"
    return "text/plain"


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(512)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror or exc}") from None


def matches(key: str, pattern: str) -> bool:
    """Go's `filepath.Match` on slash-separated paths: `*` stays within one element."""
    parts, wanted = key.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)
    )


def _group(
    files: Mapping[str, Path], patterns: tuple[str, ...], content_type: str | None
) -> list[str]:
    """The keys matching the patterns (pattern order, sorted within one), or none at all
    when one of them is not of `content_type` (the reference skips such a group)."""
    found = [k for pattern in patterns for k in sorted(files) if matches(k, pattern)]
    if content_type is not None and any(sniff(_head(files[k])) != content_type for k in found):
        return []
    return found


def classify(files: Mapping[str, Path], *, adapter: bool = False) -> Classified | None:
    """What the files (key -> where to read it) are, or None when no weights are among them."""
    for kind, patterns, content_type in (_ADAPTER_GROUPS if adapter else ()) + _WEIGHT_GROUPS:
        found = _group(files, patterns, content_type)
        if found:
            return Classified(kind, tuple(found))
    safetensors = tuple(k for k in sorted(files) if k.endswith(".safetensors"))
    if safetensors:
        return Classified("safetensors", safetensors)
    gguf = tuple(k for k in sorted(files) if _head(files[k]).startswith(_GGUF_MAGIC))
    return Classified("gguf", gguf) if gguf else None


def folder_files(folder: Path) -> dict[str, Path]:
    """The files of a folder and of the folders in it (one level, as the reference's
    globs reach), keyed by their slash-separated path relative to it."""
    out: dict[str, Path] = {}

    def entries(d: Path) -> list[Path]:
        try:
            return sorted(d.iterdir())
        except OSError:
            return []

    for entry in entries(folder):
        if entry.is_dir():
            out.update((f"{entry.name}/{e.name}", e) for e in entries(entry) if e.is_file())
        elif entry.is_file():
            out[entry.name] = entry
    return out


def buildable(
    files: Mapping[str, Path], *, where: str, span: Span | None, adapter: bool = False
) -> Classified:
    """`classify` for a build: GGUF weights or a folder to convert; a `BuildError` (at
    `span`, naming `where`) when there are no weights or only PyTorch checkpoints."""
    found = classify(files, adapter=adapter)
    if found is None:
        raise ModelNotFoundError(
            f"{ERR_MODEL_NOT_FOUND} in {where}",
            span,
            hint="FROM takes a .gguf file, a folder with one or a Hugging Face model, "
            "or a model name",
        )
    if found.kind == "pytorch":
        raise BuildError(
            f"{where} holds PyTorch checkpoints ({found.weights[0]}), which mfc does not read",
            span,
            hint="save it as safetensors: model.save_pretrained(dir, safe_serialization=True)",
        )
    return found


def _inside(folder: Path, files: list[Path], span: Span | None) -> list[Path]:
    """Resolve symlinks, refusing any that lead outside the folder (`insecure path`)."""
    root = folder.resolve()
    out = []
    for f in files:
        real = f.resolve()
        if root not in real.parents:
            raise BuildError(f"insecure path: {f.relative_to(folder)}", span)
        out.append(real)
    return out


def files_for_directory(
    folder: Path, span: Span | None, *, adapter: bool = False
) -> tuple[list[Path], Path | None]:
    """`(gguf_files, hf_folder)`: GGUF files to use as they are, or a folder to convert."""
    files = folder_files(folder)
    found = buildable(files, where=str(folder), span=span, adapter=adapter)
    weights = _inside(folder, [files[k] for k in found.weights], span)
    return ([], folder) if found.convert else (weights, None)


def files_for_model(folder: Path) -> list[Path]:
    """The reference's `filesForModel`, the files its CLI uploads for a folder: the weights
    of the first matching group, then the JSON configs, chat_template.jinja and
    tokenizer.model. Raises `ModelNotFoundError` (the reference's message, no more)."""
    files = folder_files(folder)
    found = classify(files)
    if found is None:
        raise ModelNotFoundError(ERR_MODEL_NOT_FOUND)
    selected = [folder / k for k in found.weights]
    for key in [k for p in ("*.json", "*/*.json") for k in sorted(files) if matches(k, p)]:
        if (got := sniff(_head(files[key]))) != "text/plain":
            raise BuildError(f"invalid content type: expected {got} for {folder / key}")
        selected.append(folder / key)
    selected += [folder / k for k in _group(files, ("chat_template.jinja",), "text/plain")]
    tokenizer = _group(files, ("tokenizer.model",), "application/octet-stream")
    tokenizer = tokenizer or _group(files, ("*/tokenizer.model",), "text/plain")
    return selected + [folder / k for k in tokenizer]
