"""llama.cpp's own converter (convert_hf_to_gguf.py from the llama-cpp-python 0.3.36 source
package, fetched once by bench/convert.py) run on a model directory, and a comparison of
its output with ours."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[3]

#: Runs the reference converter. Its BPE path identifies the pre-tokenizer by hashing how
#: a fixed text tokenizes and refuses hashes it does not list, which every locally
#: trained tokenizer is; the runner answers that one question with the name our
#: converter recorded (argv[1]), so everything else is the reference's own work.
#: With argv[2] == "raw-config" the reference reads config.json as written instead of
#: transformers' AutoConfig view of it (its own fallback when AutoConfig fails, as with
#: a transformers that does not know the model type).
_RUNNER = """
import runpy, sys
sys.path.insert(0, ".")
pre = sys.argv.pop(1)
raw_config = sys.argv.pop(1) == "raw-config"
from conversion import base
if pre:
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
if raw_config:
    class _NoAutoConfig:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            raise ValueError("AutoConfig left out: reading config.json as written")
    base.AutoConfig = _NoAutoConfig
runpy.run_path("convert_hf_to_gguf.py", run_name="__main__")
"""


def reference_script() -> Path:
    spec = importlib.util.spec_from_file_location(
        "mfc_bench_convert", ROOT / "bench" / "convert.py"
    )
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return Path(module.reference_converter())


def run_reference(
    src: Path,
    out: Path,
    outtype: str,
    pre: str | None,
    flags: tuple[str, ...] = (),
    raw_config: bool = False,
) -> Path:
    script = reference_script()
    cmd = [
        sys.executable,
        "-c",
        _RUNNER,
        pre or "",
        "raw-config" if raw_config else "",
        str(src),
        "--outtype",
        outtype,
        "--outfile",
        str(out),
        *flags,
    ]
    proc = subprocess.run(cmd, cwd=script.parent, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"reference converter failed:\n{proc.stderr[-3000:]}")
    return out


#: model-card keys the reference derives from the directory name and README
_CARD = (
    "general.name",
    "general.basename",
    "general.size_label",
    "general.finetune",
    "general.type",
    "general.license",
    "general.version",
)


def fields(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in _CARD:
            continue
        value = field.contents()
        out[key] = (
            [round(v, 6) if isinstance(v, float) else v for v in value]
            if isinstance(value, list)
            else value
        )
    return out


def tensors(path: Path) -> dict[str, tuple[int, tuple[int, ...], bytes]]:
    from gguf import GGUFReader

    return {
        t.name: (int(t.tensor_type), tuple(int(d) for d in t.shape), np.asarray(t.data).tobytes())
        for t in GGUFReader(path).tensors
    }


def differences(ours: Path, theirs: Path) -> list[str]:
    """Every key or tensor that differs, one line each ("key: ours != theirs")."""
    out: list[str] = []
    a, b = fields(ours), fields(theirs)
    for key in sorted(set(a) | set(b)):
        mine, ref = a.get(key, "<absent>"), b.get(key, "<absent>")
        if mine != ref:
            out.append(f"{key}: {_short(mine)} != {_short(ref)}")
    ta, tb = tensors(ours), tensors(theirs)
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            out.append(f"tensor {name}: {'ours only' if name in ta else 'reference only'}")
        elif ta[name][:2] != tb[name][:2]:
            out.append(f"tensor {name}: type/shape {ta[name][:2]} != {tb[name][:2]}")
        elif ta[name][2] != tb[name][2]:
            out.append(f"tensor {name}: data differs")
    return out


def assert_differences_explained(found: list[str], explained: Mapping[str, str]) -> None:
    """Every difference `differences` found is listed in `explained` (key -> reason), and
    every listed one is still there."""
    unexplained = [d for d in found if d.split(":")[0] not in explained]
    assert not unexplained, "\n".join(unexplained)
    assert {d.split(":")[0] for d in found} == set(explained), "a listed difference is gone"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
