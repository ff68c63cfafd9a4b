"""What an architecture module declares, and how tensor names are matched against it.

An architecture is data: a table from Hugging Face tensor names to GGUF names (with
`{bid}` standing for the block number), the shapes the config implies, per-tensor
transforms, the metadata it writes and the tokenizer kinds it accepts. The converter
drives every architecture the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata

_MISSING = object()


@dataclass(frozen=True)
class HParams:
    """config.json, with lookups that name the file when a required key is missing."""

    config: Mapping[str, Any]
    path: Path

    def get(self, *keys: str, default: Any = _MISSING) -> Any:
        """The first of `keys` present (and not null) in config.json."""
        for key in keys:
            value = self.config.get(key)
            if value is not None:
                return value
        if default is _MISSING:
            raise ConvertError(self.path, f"missing {' / '.join(repr(k) for k in keys)}")
        return default

    def int(self, *keys: str, default: Any = _MISSING) -> int:
        value = self.get(*keys, default=default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConvertError(self.path, f"{keys[0]!r} must be an integer, not {value!r}")
        return value

    def float(self, *keys: str, default: Any = _MISSING) -> float:
        value = self.get(*keys, default=default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConvertError(self.path, f"{keys[0]!r} must be a number, not {value!r}")
        return float(value)


#: (tensor data, hparams) -> transformed tensor data, float32 in and out.
Transform = Callable[[np.ndarray, HParams], np.ndarray]
#: hparams -> the Hugging Face shape a tensor must have.
Shape = Callable[[HParams], tuple[int, ...]]
#: checkpoint shape -> stored shape, same elements in the same order (a dropped unit axis)
Reshape = Callable[[tuple[int, ...]], tuple[int, ...]]


@dataclass(frozen=True)
class Split:
    """One of the GGUF tensors a checkpoint tensor is cut into (e.g. MLA's kv_b)."""

    gguf: str  # GGUF template with suffix, e.g. blk.{bid}.attn_k_b.weight
    shape: Callable[[tuple[int, ...], HParams], tuple[int, ...]]
    transform: Transform


@dataclass(frozen=True)
class Architecture:
    """One Hugging Face architecture family and its GGUF form."""

    hf_names: tuple[str, ...]
    gguf_arch: str
    #: HF name without its .weight/.bias suffix, `{bid}` for the block -> GGUF name
    tensors: Mapping[str, str]
    #: writes the architecture's keys (`{arch}.*`); the tokenizer keys come after
    metadata: Callable[[HParams, Metadata], None]
    #: tokenizer kinds to try, in order: "spm", "bpe", "wpm"
    vocab: tuple[str, ...]
    #: HF tensors to drop (regexes matched against the whole, renamed name)
    skip: tuple[str, ...] = ()
    #: (regex, replacement) applied to HF names before lookup, e.g. a "bert." prefix
    renames: tuple[tuple[str, str], ...] = ()
    #: GGUF name (with suffix) -> expected HF shape, checked before any data is read
    shapes: Mapping[str, Shape] = field(default_factory=dict)
    #: GGUF name (with suffix) -> transform applied to the float32 data
    transforms: Mapping[str, Transform] = field(default_factory=dict)
    #: tensors generated from the config (GGUF name -> float32 data), e.g. rope_freqs
    extra_tensors: Callable[[HParams], dict[str, np.ndarray]] = lambda _h: {}
    #: GGUF names (with suffix) kept in F32 when the output type is F16/BF16
    keep_f32: frozenset[str] = frozenset()
    #: the config key that sizes the vocabulary (token_embd rows)
    vocab_size_keys: tuple[str, ...] = ("vocab_size",)
    #: tokens beyond the tokenizer's are cut from token_embd instead of padding the vocab
    truncate_vocab: bool = False
    #: every block has the same tensors (False for hybrid or partly-dense MoE stacks)
    uniform_blocks: bool = True
    #: special token kind ("bos", "eot", ...) -> the token's text, set whatever the
    #: tokenizer files say (llama.cpp's converter hard-codes these for some families)
    special_tokens: Mapping[str, str] = field(default_factory=dict)
    #: token texts typed CONTROL whatever the tokenizer flags say (a turn marker left
    #: unflagged would be printed; llama.cpp's converter promotes it for some families)
    control_tokens: tuple[str, ...] = ()
    #: config key counting blocks stored after the model's own (multi-token prediction);
    #: their tensors are not converted
    extra_blocks_key: str | None = None
    #: GGUF name (with suffix) -> how its shape is stored; the bytes are unchanged
    reshapes: Mapping[str, Reshape] = field(default_factory=dict)
    #: GGUF name (with suffix) -> the tensors written instead of it
    splits: Mapping[str, tuple[Split, ...]] = field(default_factory=dict)
    #: GGUF name of an MXFP4 tensor (with suffix) -> (GGUF name, rows) it is written as;
    #: an architecture without entries refuses MXFP4 checkpoints
    mxfp4_rows: Mapping[str, tuple[tuple[str, slice], ...]] = field(default_factory=dict)
    #: llama.cpp needs output.weight even when tied: the embedding is written again
    output_required: bool = False
    #: the README's name for the family, e.g. "Gemma 2"
    family: str = ""
    #: a config key that, when set (and not 0/false), selects this entry instead of the
    #: one for the same HF names without it (NomicBertModel with `moe_every_n_layers`)
    selected_by: str | None = None
    #: (what selected_by's value must show, a test of config.json) deciding instead of
    #: the key's truthiness, e.g. Nemotron-H's pattern "has MoE blocks"
    selected_when: tuple[str, Callable[[Mapping[str, Any]], bool]] | None = None
    #: config.json (text_config lifted) -> what the entry reads as its hyperparameters
    #: (a named hook, e.g. llama4's width renaming); a ValueError from it is a
    #: config.json the entry refuses
    config_view: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda config: config

    def __post_init__(self) -> None:
        object.__setattr__(self, "_skip_re", re.compile("|".join(self.skip) or "(?!)"))


_BLOCK = re.compile(r"\.(\d+)(?=\.|$)")
#: one expert's tensor in a per-expert checkpoint (Mixtral, Qwen MoE, DeepSeek, ...), or
#: one of a list of matrices stacked outside any block (renamed to `.experts.N`)
_EXPERT = re.compile(r"\.experts\.(\d+)(?=\.|$)")


class UnmappedTensorError(LookupError):
    """A tensor the architecture neither maps nor drops."""


@dataclass(frozen=True, slots=True)
class MappedName:
    gguf: str  # full GGUF name, e.g. blk.3.attn_q.weight
    template: str  # with {bid}, e.g. blk.{bid}.attn_q.weight
    bid: int | None
    xid: int | None = None  # the expert, for a tensor stacked with its siblings


def block_of(name: str) -> int | None:
    """The block number in an HF tensor name, if it has one."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def map_tensor_name(arch: Architecture, name: str) -> MappedName | None:
    """The GGUF name of an HF tensor; None if the architecture drops it.

    Raises UnmappedTensorError for a tensor that is neither mapped nor dropped: silently
    losing a weight would give a model that loads and answers wrongly.
    """
    for pattern, replacement in arch.renames:
        name = re.sub(pattern, replacement, name)
    if arch._skip_re.fullmatch(name):  # type: ignore[attr-defined]
        return None
    stem, _, suffix = name.rpartition(".")
    # the expert first: its number is not a block number
    expert = _EXPERT.search(stem)
    xid = None
    if expert:
        xid = int(expert.group(1))
        stem = f"{stem[: expert.start()]}.experts{stem[expert.end() :]}"
    match = _BLOCK.search(stem)
    bid = int(match.group(1)) if match else None
    if match:
        stem = f"{stem[: match.start()]}.{{bid}}{stem[match.end() :]}"
    target = arch.tensors.get(stem)
    bare = arch.tensors.get(f"{stem}.{suffix}") if target is None else None
    if bare is not None:
        # a bare parameter (Mamba's A_log and D): its GGUF name has no suffix either
        template = bare
    elif target is None or not suffix:
        raise UnmappedTensorError(name)
    else:
        template = f"{target}.{suffix}"
    return MappedName(template.replace("{bid}", str(bid)), template, bid, xid)
