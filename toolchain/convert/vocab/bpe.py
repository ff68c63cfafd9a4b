"""Byte-level BPE (GPT-2 style) tokenizers from tokenizer.json -> llama.cpp "gpt2" vocab."""

from __future__ import annotations

from typing import Any

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab import pretokenizer
from toolchain.convert.vocab.model import CONTROL, NORMAL, UNUSED, USER_DEFINED, Vocab, token_table
from toolchain.convert.vocab.special import (
    add_flags,
    added_tokens,
    chat_templates,
    looks_special,
    special_ids,
)

_SPACE_IN_MERGE = chr(ord(" ") + 256)  # how byte-level BPE spells a space ("Ġ")


def is_byte_level_bpe(hf: HFDir) -> bool:
    model = hf.tokenizer_json.get("model")
    return isinstance(model, dict) and model.get("type") == "BPE" and not _is_spm_style(hf)


def _is_spm_style(hf: HFDir) -> bool:
    """A SentencePiece vocabulary exported to tokenizer.json (Metaspace, byte fallback)."""
    model = hf.tokenizer_json.get("model", {})
    decoder = str(hf.tokenizer_json.get("decoder"))
    return bool(model.get("byte_fallback")) or "Metaspace" in decoder or "▁" in decoder


def load_bpe(hf: HFDir, n_vocab: int | None) -> Vocab:
    path = hf.file("tokenizer.json")
    model: dict[str, Any] = hf.tokenizer_json["model"]
    vocab_map = model.get("vocab")
    if not isinstance(vocab_map, dict):
        raise ConvertError(path, 'BPE model without a "vocab"')
    by_id: dict[int, str] = {int(i): str(t) for t, i in vocab_map.items()}
    types: dict[int, int] = {}
    for item in added_tokens(hf):
        token_id, text = item["id"], item["content"]
        by_id[token_id] = text
        if item.get("special") or looks_special(text):
            types[token_id] = CONTROL
        else:
            by_id[token_id] = text.replace("▁", " ")
            types[token_id] = USER_DEFINED
    tokens = token_table(by_id, n_vocab, path)
    size = len(tokens)
    token_types = [types.get(i, NORMAL) if i in by_id else UNUSED for i in range(size)]

    pre = pretokenizer.identify(hf.tokenizer_json.get("pre_tokenizer"))
    warnings = []
    if pre is None:
        pre = "default"
        warnings.append(
            f"{path}: unrecognised pre-tokenizer; llama.cpp will split text with its "
            "default rules, so some texts may tokenize differently than in transformers"
        )
    ids = {text: i for i, text in enumerate(tokens)}
    for item in added_tokens(hf):
        ids[item["content"]] = item["id"]
    return Vocab(
        model="gpt2",
        tokens=tokens,
        types=token_types,
        merges=read_merges(model.get("merges"), path),
        pre=pre,
        special=special_ids(hf, ids, ("bos", "eos", "unk", "sep", "pad", "mask")),
        add=add_flags(hf),
        chat_templates=chat_templates(hf),
        warnings=warnings,
    )


def read_merges(merges: object, path: object) -> list[str]:
    if not isinstance(merges, list) or not merges:
        raise ConvertError(str(path), "BPE model without merges")
    if isinstance(merges[0], str):
        return [str(m) for m in merges]
    out = []
    for pair in merges:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ConvertError(str(path), f"unexpected merge entry {pair!r}")
        out.append(" ".join(part.replace(" ", _SPACE_IN_MERGE) for part in pair))
    return out
