"""The tokenizer as llama.cpp stores it, and how it is written into GGUF metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.metadata import Metadata
from toolchain.convert.vocab.special import KEY_WORDS

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    """A tokenizer in llama.cpp's terms: model family, token table and special ids."""

    model: str  # "gpt2" (byte-level BPE), "llama" (SentencePiece), "bert" (WordPiece)
    tokens: list[str]
    types: list[int]
    scores: np.ndarray | None = None
    merges: list[str] | None = None
    pre: str | None = None
    special: dict[str, int] = field(default_factory=dict)
    add: dict[str, bool] = field(default_factory=dict)
    add_space_prefix: bool | None = None
    token_type_count: int | None = None  # BERT segment embeddings
    chat_templates: dict[str, str] = field(default_factory=dict)
    precompiled_charsmap: bytes | None = None  # Unigram normalizer (llama.cpp "t5")
    remove_extra_whitespaces: bool | None = None
    #: things the user should know (e.g. an unrecognised pre-tokenizer)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)


def token_table(by_id: dict[int, str], n_vocab: int | None, path: object) -> list[str]:
    """The tokens by id, gaps as [PADi], padded to `n_vocab` (the embedding's rows; a
    tokenizer with ids beyond them is an error)."""
    size = max(by_id) + 1 if by_id else 0
    if n_vocab is not None:
        if size > n_vocab:
            raise ConvertError(
                str(path),
                f"has token ids up to {size - 1}, but config.json's vocab_size is {n_vocab}",
            )
        size = n_vocab
    return [by_id.get(i, f"[PAD{i}]") for i in range(size)]


def write_vocab(vocab: Vocab, md: Metadata) -> None:
    """The tokenizer.* keys, in the order llama.cpp's converter writes them."""
    md.string("tokenizer.ggml.model", vocab.model)
    if vocab.model == "bert":
        _write_wordpiece(vocab, md)
    else:
        if vocab.pre is not None:
            md.string("tokenizer.ggml.pre", vocab.pre)
        md.strings("tokenizer.ggml.tokens", vocab.tokens)
        if vocab.scores is not None:
            md.f32s("tokenizer.ggml.scores", vocab.scores)
        md.i32s("tokenizer.ggml.token_type", vocab.types)
        if vocab.merges:
            md.strings("tokenizer.ggml.merges", vocab.merges)
        for kind in ("bos", "eos", "unk", "sep", "pad", "mask", "eot", "eom"):
            if kind in vocab.special:
                md.u32(f"tokenizer.ggml.{KEY_WORDS[kind]}_token_id", vocab.special[kind])
        for kind in ("bos", "eos", "sep"):
            if kind in vocab.add:
                md.boolean(f"tokenizer.ggml.add_{kind}_token", vocab.add[kind])
        if vocab.add_space_prefix is not None:
            md.boolean("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix)
        if vocab.model == "t5":
            md.u32("tokenizer.ggml.token_type_count", vocab.token_type_count or 1)
            if vocab.remove_extra_whitespaces is not None:
                md.boolean(
                    "tokenizer.ggml.remove_extra_whitespaces", vocab.remove_extra_whitespaces
                )
            if vocab.precompiled_charsmap:
                md.u8s("tokenizer.ggml.precompiled_charsmap", vocab.precompiled_charsmap)
    for name, template in sorted(vocab.chat_templates.items()):
        md.string("tokenizer.chat_template" + (f".{name}" if name else ""), template)


#: llama.cpp's WordPiece defaults: a standard BERT vocabulary needs no id keys for these
_WPM_DEFAULT_BOS = 101


def _write_wordpiece(vocab: Vocab, md: Metadata) -> None:
    # Ollama's key set (the conformance recording), plus bos when [CLS] is not where
    # llama.cpp looks for it: llama.cpp starts every WordPiece sequence with "bos".
    for kind in ("pad", "unk", "cls", "sep", "mask"):
        if kind in vocab.special:
            md.u32(f"tokenizer.ggml.{KEY_WORDS[kind]}_token_id", vocab.special[kind])
    cls = vocab.special.get("cls")
    if cls is not None and cls != _WPM_DEFAULT_BOS:
        md.u32("tokenizer.ggml.bos_token_id", cls)
    md.u32("tokenizer.ggml.token_type_count", vocab.token_type_count or 2)
    if vocab.scores is not None:
        md.f32s("tokenizer.ggml.scores", vocab.scores)
    md.i32s("tokenizer.ggml.token_type", vocab.types)
    md.strings("tokenizer.ggml.tokens", vocab.tokens)
