"""Unigram tokenizers (XLM-RoBERTa's SentencePiece, as tokenizer.json holds it) ->
llama.cpp's "t5" (UGM) vocab.

tokenizer.json is the transformers view (ids already shifted to fairseq's order, <mask>
appended), so it is read rather than sentencepiece.bpe.model. llama.cpp's UGM
tokenizer needs the normalizer's precompiled character map, whether a "▁" is prepended
(Metaspace) and whether runs of whitespace are collapsed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir
from toolchain.convert.vocab.model import CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, Vocab
from toolchain.convert.vocab.special import add_flags, added_tokens, special_ids

_PAD_SCORE = -10000.0


def is_unigram(hf: HFDir) -> bool:
    model = hf.tokenizer_json.get("model")
    return isinstance(model, dict) and model.get("type") == "Unigram"


def load_unigram(hf: HFDir, n_vocab: int | None, token_type_count: int) -> Vocab:
    path = hf.file("tokenizer.json")
    model = hf.tokenizer_json["model"]
    pieces = model.get("vocab")
    if not isinstance(pieces, list) or not pieces:
        raise ConvertError(path, 'Unigram model without a "vocab"')
    size = max(len(pieces), n_vocab or 0)
    tokens = [f"[PAD{i}]" for i in range(size)]
    scores = [_PAD_SCORE] * size
    types = [UNUSED] * size
    for i, (piece, score) in enumerate(pieces):
        tokens[i], scores[i], types[i] = str(piece), float(score), NORMAL
    unk = model.get("unk_id")
    if isinstance(unk, int) and 0 <= unk < size:
        types[unk] = UNKNOWN
    for item in added_tokens(hf):
        token_id = item["id"]
        if token_id < size and token_id != unk:
            tokens[token_id] = item["content"]
            types[token_id] = CONTROL if item.get("special") else USER_DEFINED
    ids = {text: i for i, text in enumerate(tokens)}
    return Vocab(
        model="t5",
        tokens=tokens,
        types=types,
        scores=np.asarray(scores, dtype=np.float32),
        pre="default",
        special=special_ids(hf, ids, ("bos", "eos", "unk", "sep", "pad", "mask")),
        add={**add_flags(hf), "sep": _pairs_with_separator(hf.tokenizer_json)},
        add_space_prefix=_prepends_space(hf.tokenizer_json.get("pre_tokenizer")),
        token_type_count=token_type_count,
        precompiled_charsmap=_charsmap(hf, hf.tokenizer_json.get("normalizer")),
        remove_extra_whitespaces=bool(
            hf.tokenizer_config.get("clean_up_tokenization_spaces", True)
        ),
    )


def _pairs_with_separator(spec: dict[str, Any]) -> bool:
    """Whether a text pair gets a separator between its texts (RoBERTa: </s></s>), which
    llama.cpp's rerank input needs to know."""
    for step in _steps(spec.get("post_processor"), "processors"):
        if step.get("type") == "RobertaProcessing":
            return True
        if step.get("type") == "TemplateProcessing":
            pair = [p for p in step.get("pair", []) if isinstance(p, dict)]
            kinds = [next(iter(p)) for p in pair]
            if "Sequence" in kinds:
                first = kinds.index("Sequence")
                return "SpecialToken" in kinds[first + 1 : first + 2]
    return False


def _steps(node: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [s for item in node.get(key, []) for s in _steps(item, key)]
    return [node]


def _prepends_space(pre_tokenizer: Any) -> bool:
    for step in _steps(pre_tokenizer, "pretokenizers"):
        if step.get("type") == "Metaspace":
            return (
                step.get("prepend_scheme", "always") != "never"
                and step.get("add_prefix_space", True) is not False
            )
    return False


def _charsmap(hf: HFDir, normalizer: Any) -> bytes | None:
    for step in _steps(normalizer, "normalizers"):
        if step.get("type") == "Precompiled":
            try:
                return base64.b64decode(step.get("precompiled_charsmap") or "")
            except (binascii.Error, ValueError) as exc:
                raise ConvertError(
                    hf.file("tokenizer.json"), f"bad precompiled_charsmap: {exc}"
                ) from exc
    return None
