"""gguf-py's type tables (ggml type ids and block sizes, GGUF value types, file types)
without importing the `gguf` package: its `__init__` imports its writer, vocab
(sentencepiece) and metadata (yaml) modules, as long to import as numpy, which every
`mfc quantize` would pay for three tables. `gguf/constants.py` imports nothing of gguf's.

The module is registered as `gguf.constants`, so a later `import gguf` uses the same
classes, and a one-shot import hook gives that package its `constants` attribute (which
the import system only sets when it loads the submodule itself).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


class _BindOnImport(importlib.abc.MetaPathFinder):
    """When `gguf` itself is first imported, set its `constants` attribute to our module."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gguf":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("gguf")
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            module.constants = sys.modules["gguf.constants"]  # type: ignore[attr-defined]
            run(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _constants() -> ModuleType:
    loaded = sys.modules.get("gguf.constants")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("gguf")  # finds, does not run, gguf/__init__
    if package is None or package.origin is None:
        raise ImportError("gguf-py is not installed")
    spec = importlib.util.spec_from_file_location(
        "gguf.constants", Path(package.origin).parent / "constants.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError("gguf-py has no constants module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gguf.constants"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["gguf.constants"]
        raise
    sys.meta_path.insert(0, _BindOnImport())
    return module


if TYPE_CHECKING:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType
else:
    _c = _constants()
    GGML_QUANT_SIZES = _c.GGML_QUANT_SIZES
    GGMLQuantizationType = _c.GGMLQuantizationType
    GGUFValueType = _c.GGUFValueType
    LlamaFileType = _c.LlamaFileType

__all__ = ["GGML_QUANT_SIZES", "GGMLQuantizationType", "GGUFValueType", "LlamaFileType"]
