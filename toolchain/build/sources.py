"""What a FROM or ADAPTER folder holds, picked the way the reference's `filesForModel` does.

The first group that matches wins: safetensors weights (`model*.safetensors`, then
`consolidated*.safetensors`) make the folder a Hugging Face model for the convert pass;
otherwise its `*.gguf` files (then `*.bin` files, sniffed later) are the weights.
"""

from __future__ import annotations

from pathlib import Path

from toolchain.build.errors import BuildError
from toolchain.errors import Span

_SAFETENSORS_GROUPS = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("consolidated*.safetensors",),
)
_TORCH_GROUPS = (("pytorch_model*.bin",), ("consolidated*.pth",))
_ADAPTER_GROUPS = (("adapter_model.safetensors", "adapter_model*.safetensors"),)


def _glob(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        found.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
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
    """`(gguf_candidates, hf_folder)`: GGUF files to use as they are, or a folder to convert."""
    groups = _ADAPTER_GROUPS + _SAFETENSORS_GROUPS if adapter else _SAFETENSORS_GROUPS
    for patterns in groups:
        if _inside(folder, _glob(folder, patterns), span):
            return [], folder
    for patterns in _TORCH_GROUPS:
        if _glob(folder, patterns):
            raise BuildError(
                f"{folder} holds PyTorch checkpoints ({patterns[0]}), which mfc does not read",
                span,
                hint="save it as safetensors: model.save_pretrained(dir, safe_serialization=True)",
            )
    for patterns in (("*.gguf",), ("*.bin",)):
        found = _inside(folder, _glob(folder, patterns), span)
        if found:
            return found, None
    raise BuildError(
        f"no Modelfile or safetensors files found in {folder}",
        span,
        hint="FROM takes a .gguf file, a folder with one or a Hugging Face model, or a model name",
    )
