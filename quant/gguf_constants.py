"""GGUF's value types, and gguf-py's type tables (ggml type ids and block sizes, file
types) loaded on first use without importing the `gguf` package: its `__init__` imports
its writer, vocab (sentencepiece) and metadata (yaml) modules, as long to import as numpy.
`gguf/constants.py` imports nothing of gguf's, but builds hundreds of enums (~15 ms), which
`mfc quantize` would pay for at every start: the value types every GGUF reader and writer
needs are therefore defined here (the 13 of the GGUF specification, equal to gguf-py's),
and the three tables only a rarer path needs (a tensor type mfc does not know, a file type
it does not write) are attributes that load `gguf.constants` when first read.

That module is registered as `gguf.constants`, so a later `import gguf` uses the same
classes, and a one-shot import hook gives that package its `constants` attribute (which
the import system only sets when it loads the submodule itself).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import importlib.machinery


class _BindOnImport:
    """When `gguf` itself is first imported, set its `constants` attribute to our module.
    (A meta path finder by its `find_spec`; `importlib.abc` costs ~6 ms to import.)"""

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


class GGUFValueType(IntEnum):
    """The type of a metadata value (the GGUF specification's `gguf_metadata_value_type`)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


_LAZY = ("GGML_QUANT_SIZES", "GGMLQuantizationType", "LlamaFileType")

if TYPE_CHECKING:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType
else:

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_constants(), name)
        globals()[name] = value  # later lookups skip this hook
        return value


__all__ = ["GGML_QUANT_SIZES", "GGMLQuantizationType", "GGUFValueType", "LlamaFileType"]
