"""WordPiece tokenizers (BERT: tokenizer.json or vocab.txt) -> llama.cpp "bert" vocab.

Written the way Ollama's converter writes it (the conformance recording): tokens in
llama.cpp's "phantom space" form — a word start gets "▁", a "##" continuation loses its
prefix, bracketed specials stay as they are — and the token id as its score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab.model import CONTROL, NORMAL, UNUSED, USER_DEFINED, Vocab, token_table
from toolchain.convert.vocab.special import added_tokens, special_ids, special_token_text


def has_wordpiece(hf: HFDir) -> bool:
    model = hf.tokenizer_json.get("model")
    if isinstance(model, dict):
        return model.get("type") == "WordPiece"
    return hf.file("vocab.txt").is_file()


def phantom_space(token: str) -> str:
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def load_wordpiece(hf: HFDir, n_vocab: int | None, token_type_count: int) -> Vocab:
    by_id, path = _raw_vocab(hf)
    types: dict[int, int] = {}
    for item in added_tokens(hf):
        by_id[item["id"]] = item["content"]
        types[item["id"]] = CONTROL if item.get("special") else USER_DEFINED
    if not hf.tokenizer_json:  # vocab.txt only: the named special tokens are the control ones
        named = {special_token_text(hf, k) for k in ("unk", "sep", "pad", "cls", "mask")}
        types.update({i: CONTROL for i, t in by_id.items() if t in named})
    raw = token_table(by_id, n_vocab, path)
    size = len(raw)
    ids = {text: i for i, text in enumerate(raw)}
    return Vocab(
        model="bert",
        tokens=[phantom_space(t) for t in raw],
        types=[types.get(i, NORMAL) if i in by_id else UNUSED for i in range(size)],
        scores=np.arange(size, dtype=np.float32),
        special=special_ids(hf, ids, ("unk", "sep", "pad", "cls", "mask")),
        token_type_count=token_type_count,
    )


def _raw_vocab(hf: HFDir) -> tuple[dict[int, str], Path]:
    model = hf.tokenizer_json.get("model")
    if isinstance(model, dict):
        path = hf.file("tokenizer.json")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or not vocab:
            raise ConvertError(path, 'WordPiece model without a "vocab"')
        return {int(i): str(t) for t, i in vocab.items()}, path
    path = hf.file("vocab.txt")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(path, f"cannot read: {exc}") from exc
    if not lines:
        raise ConvertError(path, "empty vocabulary")
    return dict(enumerate(lines)), path
