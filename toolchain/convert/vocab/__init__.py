"""Tokenizers into GGUF metadata: byte-level BPE, SentencePiece and WordPiece."""

from __future__ import annotations

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab.bpe import is_byte_level_bpe, load_bpe
from toolchain.convert.vocab.model import Vocab, write_vocab
from toolchain.convert.vocab.spm import load_spm
from toolchain.convert.vocab.spm_bpe import is_spm_bpe, load_spm_bpe
from toolchain.convert.vocab.unigram import is_unigram, load_unigram
from toolchain.convert.vocab.wordpiece import has_wordpiece, load_wordpiece

__all__ = ["Vocab", "load_vocab", "write_vocab"]

_FILES = {
    "spm": "tokenizer.model",
    "bpe": "tokenizer.json (BPE)",
    "wpm": "tokenizer.json (WordPiece) or vocab.txt",
    "ugm": "tokenizer.json (Unigram)",
    "gemma4": "tokenizer.json (BPE with byte fallback)",
}


def load_vocab(
    hf: HFDir, kinds: tuple[str, ...], n_vocab: int | None, token_type_count: int = 2
) -> Vocab:
    """The first tokenizer of `kinds` ("spm", "bpe", "wpm", "ugm", "gemma4") the directory
    has.

    `n_vocab` is the embedding's row count: the token table is padded to it, and a
    tokenizer with more tokens than that is an error (None: take the tokenizer's size).
    """
    for kind in kinds:
        if kind == "spm" and hf.file("tokenizer.model").is_file():
            return load_spm(hf, n_vocab)
        if kind == "bpe" and is_byte_level_bpe(hf):
            return load_bpe(hf, n_vocab)
        if kind == "wpm" and has_wordpiece(hf):
            return load_wordpiece(hf, n_vocab, token_type_count)
        if kind == "ugm" and is_unigram(hf):
            return load_unigram(hf, n_vocab, token_type_count)
        if kind == "gemma4" and is_spm_bpe(hf):
            return load_spm_bpe(hf, n_vocab)
    if "spm" in kinds and hf.tokenizer_json and not is_byte_level_bpe(hf):
        raise ConvertError(
            hf.file("tokenizer.model"),
            "missing: tokenizer.json holds a "
            "SentencePiece vocabulary, which converts from tokenizer.model",
            hint="copy tokenizer.model from the base model's repository",
        )
    wanted = " or ".join(_FILES[k] for k in kinds)
    raise ConvertError(
        hf.path,
        f"no tokenizer: expected {wanted}",
        hint="save the tokenizer next to the model (tokenizer.save_pretrained)",
    )
