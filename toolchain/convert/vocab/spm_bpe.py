"""SentencePiece-style BPE from tokenizer.json alone (Gemma 4) -> llama.cpp "gemma4" vocab.

The pieces spell spaces as "▁" and unknown bytes as <0xXX> tokens, and the merges run
on the raw UTF-8 text after spaces become "▁" (no byte-level alphabet). llama.cpp's
"gemma4" tokenizer model does exactly that from the token list and the merges; it
always inserts BOS.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab.bpe import read_merges
from toolchain.convert.vocab.model import (
    BYTE,
    CONTROL,
    NORMAL,
    UNUSED,
    USER_DEFINED,
    Vocab,
    token_table,
)
from toolchain.convert.vocab.special import (
    add_flags,
    added_tokens,
    chat_templates,
    looks_special,
    special_ids,
)

#: Gemma 4's channel, tool-call and quote markers: special tokens that llama.cpp must
#: print (its chat parser reads them), so they are typed USER_DEFINED, as the reference
#: converter does
VISIBLE = frozenset(
    {
        "<|channel>",
        "<channel|>",
        "<|tool_call>",
        "<tool_call|>",
        "<|tool_response>",
        "<tool_response|>",
        '<|"|>',
    }
)
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
#: every piece gets this score (merges, not scores, drive llama.cpp's BPE)
_SCORE = -1000.0


def is_spm_bpe(hf: HFDir) -> bool:
    """tokenizer.json holds a BPE with byte fallback (SentencePiece exported)."""
    model = hf.tokenizer_json.get("model")
    return (
        isinstance(model, dict) and model.get("type") == "BPE" and bool(model.get("byte_fallback"))
    )


def _listed_specials(hf: HFDir) -> set[str]:
    """tokenizer_config's extra (additional) special tokens: transformers counts them as
    special even where tokenizer.json's added_tokens do not say so."""
    found: set[str] = set()
    for key in ("extra_special_tokens", "additional_special_tokens"):
        value = hf.tokenizer_config.get(key)
        items = list(value.values()) if isinstance(value, dict) else value
        for item in items if isinstance(items, list) else []:
            text = item.get("content") if isinstance(item, dict) else item
            if isinstance(text, str):
                found.add(text)
    return found


def load_spm_bpe(hf: HFDir, n_vocab: int | None) -> Vocab:
    path = hf.file("tokenizer.json")
    model: dict[str, Any] = hf.tokenizer_json["model"]
    pieces = model.get("vocab")
    if not isinstance(pieces, dict):
        raise ConvertError(path, 'BPE model without a "vocab"')
    by_id: dict[int, str] = {int(i): str(t) for t, i in pieces.items()}
    types = {i: BYTE if _BYTE_PIECE.fullmatch(t) else NORMAL for i, t in by_id.items()}
    listed = _listed_specials(hf)
    for item in added_tokens(hf):
        token_id, text = item["id"], item["content"]
        by_id[token_id] = text
        special = item.get("special") or looks_special(text) or text in listed
        types[token_id] = USER_DEFINED if text in VISIBLE or not special else CONTROL
    tokens = token_table(by_id, n_vocab, path)
    size = len(tokens)
    ids = {text: i for i, text in enumerate(tokens)}
    return Vocab(
        model="gemma4",
        tokens=tokens,
        types=[types.get(i, UNUSED) for i in range(size)],
        scores=np.full(size, _SCORE, dtype=np.float32),
        merges=read_merges(model.get("merges"), path),
        special=special_ids(hf, ids, ("bos", "eos", "unk", "sep", "pad", "mask")),
        add={**add_flags(hf), "bos": True},
        add_space_prefix=False,
        chat_templates=chat_templates(hf),
    )
