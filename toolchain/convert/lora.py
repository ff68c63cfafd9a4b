"""`convert_lora`: a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)
-> a GGUF LoRA that llama.cpp applies on top of the converted base model.

Each adapted weight W gets `<gguf name>.lora_a` (A: rank x in) and `.lora_b` (B: out x
rank); llama.cpp adds (alpha / rank) * B @ A. Row permutations the base conversion
applies to W (Llama's Q/K) are applied to B, so B @ A stays aligned with W.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from toolchain.convert.arch import ARCHITECTURES, architecture_for
from toolchain.convert.architecture import (
    Architecture,
    HParams,
    UnmappedTensorError,
    map_tensor_name,
)
from toolchain.convert.convert import QUANTIZATION_VERSION, ConvertResult
from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import read_json
from toolchain.convert.metadata import Metadata
from toolchain.convert.outtype import OutType, encoded_nbytes, resolve_outtype, tensor_type
from toolchain.convert.safetensors_file import FLOAT_DTYPES, SafetensorsFile, TensorEntry
from toolchain.convert.writer import PlannedTensor, input_files, write_gguf
from toolchain.progress import ProgressCallback, ProgressEvent, no_progress
from toolchain.store.gguf_reader import GGUFArray, GGUFError, read_gguf

#: GGUF architectures whose adapters convert (the Llama-style decoders)
LORA_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")

_PEFT_NAME = re.compile(
    r"^(?:base_model\.model\.)?(?P<base>.+)\.lora_(?P<ab>[AB])"
    r"(?:\.[A-Za-z0-9_]+)?\.weight"
)


@dataclass
class BaseModel:
    """What the adapter needs from its base: architecture, shape-giving hparams, shapes."""

    arch: Architecture
    hp: HParams
    shapes: dict[str, tuple[int, ...]]  # GGUF name -> (out, in); empty if unknown


def convert_lora(
    adapter_dir: Path | str,
    out_path: Path | str,
    base: Path | str,
    outtype: str = "f16",
    progress: ProgressCallback | None = None,
) -> ConvertResult:
    """Convert a PEFT LoRA adapter for `base` (the base model's GGUF file or HF directory)."""
    report = progress or no_progress
    root, out = Path(adapter_dir), Path(out_path)
    if not root.is_dir():
        raise ConvertError(root, "not a directory" if root.exists() else "no such directory")
    config_path = root / "adapter_config.json"
    config = read_json(config_path, required=True)
    alpha = _alpha(config, config_path)
    weights = root / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConvertError(weights, "missing", hint="save the adapter with safe_serialization=True")
    model = load_base(Path(base))
    report(ProgressEvent(f"reading {root}"))
    shard = SafetensorsFile(weights)
    try:
        out_type = resolve_outtype(outtype, None if outtype != "auto" else "F16")
        if out_type.quantize:
            raise ConvertError(
                "--outtype",
                "LoRA adapters convert to f32, f16 or bf16",
                hint="llama.cpp applies adapters in float precision",
            )
        tensors = _plan(shard, model, out_type)
        md = Metadata(model.arch.gguf_arch)
        md.string("general.architecture", model.arch.gguf_arch)
        md.string("general.type", "adapter")
        md.string("adapter.type", "lora")
        md.f32("adapter.lora.alpha", alpha)
        md.u32("general.file_type", int(out_type.file_type))
        md.u32("general.quantization_version", QUANTIZATION_VERSION)
        base_files = input_files(Path(base)) if Path(base).is_dir() else [Path(base)]
        write_gguf(
            out,
            md,
            tensors,
            model.hp,
            progress=report,
            status="converting adapter",
            inputs=[*input_files(root), *base_files],
        )
    finally:
        shard.close()
    report(ProgressEvent(f"wrote {out}"))
    return ConvertResult(
        out,
        model.arch.gguf_arch,
        out_type.name,
        int(out_type.file_type),
        len(tensors),
        out.stat().st_size,
    )


def _alpha(config: dict[str, object], path: Path) -> float:
    if config.get("peft_type", "LORA") != "LORA":
        raise ConvertError(path, f"peft_type {config.get('peft_type')!r} is not a LoRA")
    if config.get("use_dora"):
        raise ConvertError(path, "DoRA adapters are not supported by llama.cpp")
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        raise ConvertError(
            path,
            "per-module alpha_pattern / rank_pattern cannot be "
            "expressed in a GGUF LoRA (one alpha for all tensors)",
        )
    alpha, rank = config.get("lora_alpha"), config.get("r")
    if not isinstance(alpha, int | float) or not isinstance(rank, int) or rank <= 0:
        raise ConvertError(path, 'needs numeric "lora_alpha" and "r"')
    # rsLoRA scales by alpha/sqrt(r); llama.cpp by alpha/r: fold the difference into alpha
    return float(alpha) * math.sqrt(rank) if config.get("use_rslora") else float(alpha)


def load_base(path: Path) -> BaseModel:
    """The base model's architecture and tensor shapes, from its GGUF or HF directory."""
    if path.is_dir():
        config_path = path / "config.json"
        config = read_json(config_path, required=True)
        archs = config.get("architectures") or [""]
        arch = architecture_for(str(archs[0]), config_path)
        try:
            hp = HParams(arch.config_view(config), config_path)
        except ValueError as exc:
            raise ConvertError(config_path, str(exc)) from None
        return BaseModel(_lora_arch(arch, config_path), hp, {})
    if not path.is_file():
        raise ConvertError(path, "no such base model (expected a GGUF file or HF directory)")
    try:
        info = read_gguf(path, full_arrays=True)
    except GGUFError as exc:
        raise ConvertError(path, f"not a readable GGUF file: {exc.message}") from None
    fields = {k: list(v.items) if isinstance(v, GGUFArray) else v for k, v in info.kv.items()}
    name = str(fields.get("general.architecture", ""))
    found = next((a for a in ARCHITECTURES if a.gguf_arch == name), None)
    if found is None:
        raise ConvertError(
            path,
            f"base architecture {name!r} has no LoRA conversion",
            hint="supported bases: " + ", ".join(LORA_ARCHITECTURES),
        )
    n_head = fields.get(f"{name}.attention.head_count")
    config = {
        "num_attention_heads": n_head,
        "num_key_value_heads": fields.get(f"{name}.attention.head_count_kv", n_head),
        "num_hidden_layers": fields.get(f"{name}.block_count"),
    }
    shapes = {t.name: tuple(reversed(t.ne)) for t in info.tensors}
    return BaseModel(_lora_arch(found, path), HParams(config, path), shapes)


def _lora_arch(arch: Architecture, path: Path) -> Architecture:
    if arch.gguf_arch not in LORA_ARCHITECTURES:
        raise ConvertError(
            path,
            f"LoRA adapters for {arch.gguf_arch} bases are not supported",
            hint="supported bases: " + ", ".join(LORA_ARCHITECTURES),
        )
    return arch


def _plan(shard: SafetensorsFile, model: BaseModel, out_type: OutType) -> list[PlannedTensor]:
    pairs: dict[str, dict[str, TensorEntry]] = {}
    for name, entry in shard.tensors.items():
        match = _PEFT_NAME.fullmatch(name)
        if match is None:
            raise ConvertError(
                shard.path,
                f"tensor {name!r} is not a LoRA A/B matrix",
                hint="adapters that train whole modules (modules_to_save, "
                "new embeddings) cannot be applied as a GGUF LoRA",
            )
        if entry.dtype not in FLOAT_DTYPES:
            raise ConvertError(
                shard.path, f"tensor {name!r} has dtype {entry.dtype}, which mfc cannot convert"
            )
        try:
            mapped = map_tensor_name(model.arch, match["base"] + ".weight")
        except UnmappedTensorError:
            mapped = None
        if mapped is None:
            raise ConvertError(
                shard.path,
                f"tensor {name!r} adapts a weight that {model.arch.gguf_arch} models do not have",
            )
        pairs.setdefault(mapped.gguf, {})[match["ab"]] = entry
    planned: list[PlannedTensor] = []
    for gguf_name in sorted(pairs, key=_block_order):
        pair = pairs[gguf_name]
        if set(pair) != {"A", "B"}:
            raise ConvertError(shard.path, f"{gguf_name}: lora_A and lora_B must come in pairs")
        a, b = pair["A"], pair["B"]
        _check_pair(shard.path, gguf_name, a.shape, b.shape, model.shapes.get(gguf_name))
        template = re.sub(r"^blk\.\d+\.", "blk.{bid}.", gguf_name)
        for suffix, entry, transform in (
            (".lora_a", a, None),
            (".lora_b", b, model.arch.transforms.get(template)),
        ):
            ggml = tensor_type(out_type, gguf_name + suffix, 2, False)
            planned.append(
                PlannedTensor(
                    gguf_name + suffix,
                    entry.shape,
                    ggml,
                    encoded_nbytes(entry.shape, ggml),
                    source=entry,
                    transform=transform,
                )
            )
    if not planned:
        raise ConvertError(shard.path, "no LoRA tensors")
    return planned


def _check_pair(
    path: Path, name: str, a: tuple[int, ...], b: tuple[int, ...], base: tuple[int, ...] | None
) -> None:
    if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
        raise ConvertError(
            path, f"{name}: lora_A {list(a)} and lora_B {list(b)} do not share a rank"
        )
    if base is not None and (b[0], a[1]) != base:
        raise ConvertError(
            path,
            f"{name}: the adapter's delta is {[b[0], a[1]]} but the base "
            f"model's weight is {list(base)}",
            hint="was this adapter trained on a different base model?",
        )


def _block_order(name: str) -> tuple[int, str]:
    match = re.match(r"blk\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)
