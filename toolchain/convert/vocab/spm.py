"""SentencePiece tokenizers (tokenizer.model: Llama 2, Mistral, Gemma) -> "llama" vocab."""

from __future__ import annotations

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab.model import CONTROL, UNUSED, USER_DEFINED, Vocab
from toolchain.convert.vocab.sentencepiece_model import read_sentencepiece_model
from toolchain.convert.vocab.special import (
    add_flags,
    added_tokens,
    chat_templates,
    looks_special,
    special_ids,
)

_ADDED_SCORE = -1000.0
_PAD_SCORE = -10000.0


def load_spm(hf: HFDir, n_vocab: int | None) -> Vocab:
    path = hf.file("tokenizer.model")
    spm = read_sentencepiece_model(path)
    tokens = list(spm.pieces)
    scores = list(spm.scores)
    types = list(spm.types)
    for item in added_tokens(hf):
        token_id, text = item["id"], item["content"]
        if token_id >= len(tokens):
            missing = token_id + 1 - len(tokens)
            tokens += [f"[PAD{i}]" for i in range(len(tokens), token_id + 1)]
            scores += [_PAD_SCORE] * missing
            types += [UNUSED] * missing
        special = item.get("special") or looks_special(text)
        tokens[token_id] = text if special else text.replace("▁", " ")
        scores[token_id] = _ADDED_SCORE
        types[token_id] = CONTROL if special else USER_DEFINED
    if n_vocab is not None:
        if len(tokens) > n_vocab:
            raise ConvertError(
                path, f"has {len(tokens)} tokens, but config.json's vocab_size is {n_vocab}"
            )
        pad = n_vocab - len(tokens)
        tokens += [f"[PAD{i}]" for i in range(len(tokens), n_vocab)]
        scores += [_PAD_SCORE] * pad
        types += [UNUSED] * pad
    ids = {text: i for i, text in enumerate(tokens)}
    for item in added_tokens(hf):
        ids[item["content"]] = item["id"]
    return Vocab(
        model="llama",
        tokens=tokens,
        types=types,
        scores=np.asarray(scores, dtype=np.float32),
        pre="default",
        special=special_ids(hf, ids, ("bos", "eos", "unk", "sep", "pad", "mask")),
        add=add_flags(hf),
        add_space_prefix=spm.add_dummy_prefix,
        chat_templates=chat_templates(hf),
    )
