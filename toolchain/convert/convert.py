"""`convert_hf_dir`: a Hugging Face model directory -> one GGUF file.

Everything that can be wrong with the input (architecture, shapes, dtypes, tokenizer)
is checked while planning, before the output file is opened.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import LlamaFileType

from toolchain.convert.arch import architecture_for
from toolchain.convert.architecture import (
    Architecture,
    HParams,
    MappedName,
    UnmappedTensorError,
    block_of,
    map_tensor_name,
)
from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir, open_hf_dir
from toolchain.convert.metadata import Metadata
from toolchain.convert.mxfp4 import MXFP4, is_mxfp4_part, plan_mxfp4
from toolchain.convert.outtype import OutType, encoded_nbytes, resolve_outtype, tensor_type
from toolchain.convert.quantized import apply_policy
from toolchain.convert.safetensors_file import FLOAT_DTYPES, TensorEntry
from toolchain.convert.vocab import Vocab, load_vocab, write_vocab
from toolchain.convert.vocab.model import CONTROL
from toolchain.convert.writer import PlannedTensor, input_files, write_gguf
from toolchain.progress import ProgressCallback, ProgressEvent, no_progress

QUANTIZATION_VERSION = 2


@dataclass
class ConvertResult:
    """What was written."""

    path: Path
    architecture: str  # the GGUF architecture, e.g. "llama"
    outtype: str
    file_type: int
    tensor_count: int
    size: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "architecture": self.architecture,
            "outtype": self.outtype,
            "file_type": self.file_type,
            "tensors": self.tensor_count,
            "size": self.size,
            "warnings": self.warnings,
        }


def convert_hf_dir(
    src_dir: Path | str,
    out_path: Path | str,
    outtype: str = "f16",
    progress: ProgressCallback | None = None,
) -> ConvertResult:
    """Convert a Hugging Face directory (config.json + safetensors + tokenizer) to GGUF.

    Writes `out_path` atomically (temp file + rename). Raises ConvertError, naming the
    offending file, for anything wrong with the input; nothing is written then.
    """
    report = progress or no_progress
    out = Path(out_path)
    resolve_outtype(outtype, None)  # a bad --outtype fails before any file is read
    with open_hf_dir(src_dir) as hf:
        report(ProgressEvent(f"reading {hf.path}"))
        arch = architecture_for(hf.architecture, hf.file("config.json"), hf.config)
        hp = HParams(config_view(arch, hf), hf.file("config.json"))
        out_type = resolve_outtype(outtype, hf.first_weight_dtype)
        n_vocab = None if arch.truncate_vocab else hp.int(*arch.vocab_size_keys)
        vocab = load_vocab(hf, arch.vocab, n_vocab, hp.int("type_vocab_size", default=2))
        _set_special_tokens(hf, arch, vocab)
        tensors = plan_tensors(hf, arch, hp, out_type, len(vocab))
        if out_type.quantize:
            apply_policy(tensors, out_type, arch.gguf_arch, hp, _n_layer(hp))
        file_type = int(out_type.file_type)
        if out_type.quantize is None and any(t.ggml == MXFP4 for t in tensors):
            file_type = int(LlamaFileType.MOSTLY_MXFP4_MOE)  # as llama.cpp's converter says
        md = build_metadata(hf, arch, hp, file_type, vocab)
        for warning in vocab.warnings:
            report(ProgressEvent(f"warning: {warning}"))
        write_gguf(out, md, tensors, hp, progress=report, inputs=input_files(hf.path))
    report(ProgressEvent(f"wrote {out}"))
    return ConvertResult(
        out,
        arch.gguf_arch,
        out_type.name,
        file_type,
        len(tensors),
        out.stat().st_size,
        list(vocab.warnings),
    )


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text model's settings: a multimodal config's `text_config` over the top level
    (as the reference reads it)."""
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, dict) else config


def config_view(arch: Architecture, hf: HFDir) -> Mapping[str, Any]:
    """config.json as the architecture entry reads it (see Architecture.config_view)."""
    try:
        return arch.config_view(text_config(hf.config))
    except ValueError as exc:
        raise ConvertError(hf.file("config.json"), str(exc)) from None


def _set_special_tokens(hf: HFDir, arch: Architecture, vocab: Vocab) -> None:
    ids = {text: i for i, text in enumerate(vocab.tokens)}
    for kind, text in arch.special_tokens.items():
        if text not in ids:
            raise ConvertError(
                hf.file("tokenizer.json"),
                f"no {text!r} token, which {hf.architecture} uses as its {kind} token",
            )
        vocab.special[kind] = ids[text]
    for text in arch.control_tokens:
        if text in ids:
            vocab.types[ids[text]] = CONTROL


def build_metadata(
    hf: HFDir, arch: Architecture, hp: HParams, file_type: int, vocab: Vocab
) -> Metadata:
    md = Metadata(arch.gguf_arch)
    md.string("general.architecture", arch.gguf_arch)
    arch.metadata(hp, md)
    if hf.pooling_type is not None:
        md.u32("{arch}.pooling_type", hf.pooling_type)
    md.u32("general.file_type", file_type)
    md.u32("general.quantization_version", QUANTIZATION_VERSION)
    write_vocab(vocab, md)
    return md


def plan_tensors(
    hf: HFDir, arch: Architecture, hp: HParams, out: OutType, n_tokens: int
) -> list[PlannedTensor]:
    """The output tensors in write order, each checked against the config."""
    planned: dict[str, tuple[tuple[int, int], PlannedTensor]] = {}
    blocks: dict[int, set[str]] = {}
    experts: dict[str, dict[int, tuple[int, MappedName, TensorEntry]]] = {}
    n_layer = _n_layer(hp)
    n_extra = hp.int(arch.extra_blocks_key, default=0) if arch.extra_blocks_key else 0
    mxfp4 = plan_mxfp4(hf, arch, hp) if arch.mxfp4_rows else []
    for t in mxfp4:
        planned[t.name] = (_sort_key(_block(t.name), t.name, -1), t)
    for order, (name, entry) in enumerate(hf.tensors.items()):
        if is_mxfp4_part(name, entry) and arch.mxfp4_rows:
            continue
        if is_mxfp4_part(name, entry):
            raise ConvertError(
                entry.file.path,
                f"tensor {name!r} holds MXFP4 blocks ({hf.architecture}'s "
                "quantized experts): converting them as they are is not supported yet",
                hint="save a dequantized (bf16) copy first, e.g. transformers' "
                "from_pretrained(..., quantization_config=Mxfp4Config(dequantize=True))",
            )
        try:
            mapped = map_tensor_name(arch, name)
        except UnmappedTensorError:
            if n_extra and n_layer <= (block_of(name) or -1) < n_layer + n_extra:
                continue
            raise ConvertError(
                entry.file.path,
                f"tensor {name!r} has no {arch.gguf_arch} GGUF name",
                hint=f"is config.json's architecture ({hf.architecture}) right for these weights?",
            ) from None
        if mapped is None:
            continue
        if entry.dtype not in FLOAT_DTYPES:
            raise ConvertError(
                entry.file.path,
                f"tensor {name!r} has dtype {entry.dtype}, which mfc cannot convert",
                hint="supported weight dtypes: F32, F16, BF16, F64",
            )
        if mapped.bid is not None:
            if mapped.bid >= n_layer and mapped.bid < n_layer + n_extra:
                continue
            if mapped.bid >= n_layer:
                raise ConvertError(
                    entry.file.path,
                    f"tensor {name!r} is in block {mapped.bid}, "
                    f"but config.json has {n_layer} layers",
                )
            blocks.setdefault(mapped.bid, set()).add(mapped.template)
        if mapped.xid is not None:
            experts.setdefault(mapped.gguf, {})[mapped.xid] = (order, mapped, entry)
            continue
        shape = _checked_shape(
            arch, hp, mapped.template, name, shape=entry.shape, file=entry.file.path
        )
        reshape = arch.reshapes.get(mapped.template)
        if reshape is not None:
            shape = reshape(shape)
        rows = None
        if arch.truncate_vocab and mapped.gguf in ("token_embd.weight", "output.weight"):
            if shape[0] < n_tokens:
                raise ConvertError(
                    entry.file.path,
                    f"tensor {name!r} has {shape[0]} rows but the tokenizer has {n_tokens} tokens",
                )
            rows = n_tokens
            shape = (n_tokens, *shape[1:])
        if mapped.gguf in planned:
            raise ConvertError(
                entry.file.path,
                f"tensor {name!r} maps to {mapped.gguf}, which another tensor already provides",
            )
        for split in arch.splits.get(mapped.template, ()):
            part = split.gguf.replace("{bid}", str(mapped.bid))
            part_shape = split.shape(shape, hp)
            ggml = tensor_type(out, part, len(part_shape), split.gguf in arch.keep_f32, entry.dtype)
            planned[part] = (
                _sort_key(mapped.bid, part, order),
                PlannedTensor(
                    part,
                    part_shape,
                    ggml,
                    encoded_nbytes(part_shape, ggml),
                    source=entry,
                    transform=split.transform,
                ),
            )
        if mapped.template in arch.splits:
            continue
        ggml = tensor_type(
            out, mapped.gguf, len(shape), mapped.template in arch.keep_f32, entry.dtype
        )
        planned[mapped.gguf] = (
            _sort_key(mapped.bid, mapped.gguf, order),
            PlannedTensor(
                mapped.gguf,
                shape,
                ggml,
                encoded_nbytes(shape, ggml),
                source=entry,
                transform=arch.transforms.get(mapped.template),
                rows=rows,
            ),
        )
    for gguf_name, parts in experts.items():
        if gguf_name in planned:
            raise ConvertError(hf.path, f"{gguf_name} is given both stacked and per expert")
        planned[gguf_name] = _stacked(arch, hp, gguf_name, parts, out)
    if arch.output_required and "output.weight" not in planned and "token_embd.weight" in planned:
        embd = planned["token_embd.weight"][1]
        planned["output.weight"] = (
            _sort_key(None, "output.weight", 1 << 30),
            PlannedTensor(
                "output.weight",
                embd.shape,
                embd.ggml,
                embd.nbytes,
                source=embd.source,
                transform=embd.transform,
                rows=embd.rows,
            ),
        )
    if arch.uniform_blocks:
        _check_blocks(hf, blocks, n_layer)
    else:
        _check_block_count(hf, blocks, n_layer)
    for name, data in arch.extra_tensors(hp).items():
        ggml = tensor_type(out, name, data.ndim, True)
        planned[name] = (
            _sort_key(None, name, -1),
            PlannedTensor(name, data.shape, ggml, encoded_nbytes(data.shape, ggml), data=data),
        )
    return [t for _key, t in sorted(planned.values(), key=lambda kt: kt[0])]


def _stacked(
    arch: Architecture,
    hp: HParams,
    gguf_name: str,
    parts: dict[int, tuple[int, MappedName, TensorEntry]],
    out: OutType,
) -> tuple[tuple[int, int], PlannedTensor]:
    """One tensor from per-expert ones: experts 0..n-1 stacked along a new first axis."""
    order, mapped, first = parts[min(parts)]
    missing = sorted(set(range(max(parts) + 1)) - set(parts))
    if missing or min(parts) != 0:
        raise ConvertError(
            first.file.path,
            f"{gguf_name}: no tensor for expert {missing[0] if missing else 0}",
            hint="a shard may be missing",
        )
    entries = [parts[x][2] for x in range(len(parts))]
    for entry in entries[1:]:
        if entry.shape != first.shape:
            raise ConvertError(
                entry.file.path,
                f"{gguf_name}: experts have different shapes "
                f"({list(first.shape)} and {list(entry.shape)})",
            )
    shape = _checked_shape(
        arch,
        hp,
        mapped.template,
        gguf_name,
        shape=(len(entries), *first.shape),
        file=first.file.path,
    )
    # the first expert's dtype, as the reference's merged tensors take the first one's kind
    ggml = tensor_type(out, gguf_name, len(shape), mapped.template in arch.keep_f32, first.dtype)
    return _sort_key(mapped.bid, gguf_name, order), PlannedTensor(
        gguf_name,
        shape,
        ggml,
        encoded_nbytes(shape, ggml),
        source=entries[0],
        stacked=tuple(entries[1:]),
        transform=arch.transforms.get(mapped.template),
    )


def _block(gguf_name: str) -> int | None:
    parts = gguf_name.split(".")
    return int(parts[1]) if parts[0] == "blk" else None


def _n_layer(hp: HParams) -> int:
    return hp.int("num_hidden_layers", "n_layer", "n_layers")


def _sort_key(bid: int | None, name: str, order: int) -> tuple[int, int]:
    """Embeddings first, then blocks in order, then the output head (HF order within)."""
    if bid is not None:
        return bid + 1, order
    if name.startswith(("output", "cls")):
        return 1 << 30, order
    return 0, order


def _checked_shape(
    arch: Architecture, hp: HParams, template: str, name: str, *, shape: tuple[int, ...], file: Path
) -> tuple[int, ...]:
    expect = arch.shapes.get(template)
    if expect is not None:
        want = expect(hp)
        if tuple(shape) != want:
            raise ConvertError(
                file,
                f"tensor {name!r} has shape {list(shape)}, but config.json implies {list(want)}",
                hint="config.json does not describe these weights",
            )
    if math.prod(shape) == 0:
        raise ConvertError(file, f"tensor {name!r} is empty")
    return tuple(shape)


def _check_block_count(hf: HFDir, blocks: dict[int, set[str]], n_layer: int) -> None:
    """Every block has some tensor (for stacks whose blocks differ in kind)."""
    for bid in range(n_layer):
        if blocks and bid not in blocks:
            raise ConvertError(
                hf.path,
                f"incomplete checkpoint: no tensor for block {bid}",
                hint="a shard may be missing or config.json has too many layers",
            )


def _check_blocks(hf: HFDir, blocks: dict[int, set[str]], n_layer: int) -> None:
    if not blocks:
        return
    expected = blocks.get(0, set())
    for bid in range(n_layer):
        missing = expected - blocks.get(bid, set())
        if bid not in blocks or missing:
            what = (
                sorted(re.sub(r"\{bid\}", str(bid), m) for m in missing)
                if bid in blocks
                else [f"block {bid}"]
            )
            raise ConvertError(
                hf.path,
                "incomplete checkpoint: no tensor for " + ", ".join(what[:3]),
                hint="a shard may be missing or config.json has too many layers",
            )
