"""A Hugging Face model directory: its JSON files, tokenizer files and safetensors shards.

Only metadata is read here; tensor data stays in the shards' memory maps until the
converter asks for one tensor at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.convert.errors import ConvertError
from toolchain.convert.safetensors_file import SafetensorsFile, TensorEntry, is_safetensors_name

#: sentence-transformers Pooling flags -> llama.cpp pooling type (MEAN 1, CLS 2, LAST 3).
POOLING_MODES = (
    ("pooling_mode_mean_tokens", 1),
    ("pooling_mode_cls_token", 2),
    ("pooling_mode_lasttoken", 3),
)


def read_json(path: Path, *, required: bool = False) -> dict[str, Any]:
    """A JSON object from `path`; {} when absent and not required."""
    if not path.is_file():
        if required:
            raise ConvertError(path, "missing", hint=_MISSING_HINTS.get(path.name))
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(path, f"cannot read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConvertError(path, f"invalid JSON (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError:
        raise ConvertError(path, "invalid JSON (nested too deep)") from None
    if not isinstance(data, dict):
        raise ConvertError(path, "expected a JSON object")
    return data


_MISSING_HINTS = {
    "config.json": "point at a Hugging Face model directory (config.json + *.safetensors)",
    "adapter_config.json": "point at a PEFT adapter directory (adapter_config.json + "
    "adapter_model.safetensors)",
}


@dataclass
class HFDir:
    """What a converter needs from a model directory, loaded eagerly except tensor data."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, TensorEntry]
    shards: list[SafetensorsFile]
    tokenizer_json: dict[str, Any] = field(default_factory=dict)
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    special_tokens_map: dict[str, Any] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
    pooling_type: int | None = None
    normalize_embeddings: bool = False

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def first_weight_dtype(self) -> str | None:
        """The dtype of the checkpoint's first matrix, which `--outtype auto` follows."""
        return next((e.dtype for e in self.tensors.values() if len(e.shape) > 1), None)

    @property
    def architecture(self) -> str:
        archs = self.config.get("architectures")
        if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
            raise ConvertError(self.file("config.json"), 'no "architectures" entry')
        return archs[0]

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    def __enter__(self) -> HFDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_hf_dir(path: Path | str) -> HFDir:
    """Read a model directory's configuration and index its safetensors shards."""
    root = Path(path)
    if not root.is_dir():
        raise ConvertError(root, "not a directory" if root.exists() else "no such directory")
    config = read_json(root / "config.json", required=True)
    shards, tensors = _open_shards(root)
    hf = HFDir(root, config, tensors, shards)
    try:
        hf.tokenizer_json = read_json(root / "tokenizer.json")
        hf.tokenizer_config = read_json(root / "tokenizer_config.json")
        hf.special_tokens_map = read_json(root / "special_tokens_map.json")
        hf.generation_config = read_json(root / "generation_config.json")
        hf.pooling_type, hf.normalize_embeddings = _sentence_transformers(root)
    except BaseException:
        hf.close()
        raise
    return hf


def _open_shards(root: Path) -> tuple[list[SafetensorsFile], dict[str, TensorEntry]]:
    index_path = root / "model.safetensors.index.json"
    if index_path.is_file():
        weight_map = read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConvertError(index_path, 'no "weight_map"')
        names = sorted(set(map(str, weight_map.values())))
        for name in names:
            if not (root / name).is_file():
                raise ConvertError(root / name, f"missing (listed in {index_path.name})")
    else:
        found = sorted(
            p.name
            for p in root.iterdir()
            if is_safetensors_name(p) and not p.name.startswith("adapter_model")
        )
        # transformers' own files win over other exports beside them (consolidated.*)
        names = [n for n in found if n.startswith("model")] or found
        weight_map = None
    if not names:
        has_bin = any(root.glob("*.bin")) or any(root.glob("*.pt"))
        raise ConvertError(
            root,
            "no .safetensors weights",
            hint="save the model with save_pretrained(..., safe_serialization=True)"
            if has_bin
            else "expected model.safetensors or model-0000x-of-0000y.safetensors",
        )
    shards: list[SafetensorsFile] = []
    tensors: dict[str, TensorEntry] = {}
    try:
        for name in names:
            shard = SafetensorsFile(root / name)
            shards.append(shard)
            for tname, entry in shard.tensors.items():
                if tname in tensors:
                    raise ConvertError(
                        shard.path,
                        f"tensor {tname!r} also appears in {tensors[tname].file.path.name}",
                    )
                tensors[tname] = entry
        if weight_map is not None:
            for tname, fname in weight_map.items():
                listed = tensors.get(tname)
                if listed is None or listed.file.path.name != fname:
                    raise ConvertError(
                        root / str(fname),
                        f"tensor {tname!r} listed in {index_path.name} is not in this file",
                    )
    except BaseException:
        for shard in shards:
            shard.close()
        raise
    return shards, tensors


def _sentence_transformers(root: Path) -> tuple[int | None, bool]:
    """(pooling type, normalize) from modules.json and its Pooling module, if present."""
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return None, False
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConvertError(modules_path, f"cannot read: {exc}") from exc
    except RecursionError:
        raise ConvertError(modules_path, "invalid JSON (nested too deep)") from None
    if not isinstance(modules, list):
        raise ConvertError(modules_path, "expected a JSON list of modules")
    pooling: int | None = None
    normalize = False
    for module in _dicts(modules):
        kind = str(module.get("type", ""))
        if kind.endswith(".Normalize"):
            normalize = True
        if kind.endswith(".Pooling"):
            pool_config = read_json(root / str(module.get("path", "")) / "config.json")
            for flag, value in POOLING_MODES:
                if pool_config.get(flag) is True:
                    pooling = value
                    break
    return pooling, normalize


def _dicts(items: list[Any]) -> Iterator[dict[str, Any]]:
    return (item for item in items if isinstance(item, dict))
