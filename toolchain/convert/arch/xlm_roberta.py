"""XLMRobertaModel (embeddings, e.g. multilingual-e5 / bge-m3) and
XLMRobertaForSequenceClassification (rerankers, e.g. bge-reranker) -> GGUF "bert".

RoBERTa numbers positions from pad_token_id + 1, so the first pad_token_id + 1 rows of
the position table are never used: they are cut, and the context length shrinks by as
much. The tokenizer is SentencePiece Unigram (llama.cpp's "t5" vocab). A classifier
head becomes cls / cls.output and the file asks for rank pooling.
"""

from __future__ import annotations

import numpy as np

from toolchain.convert.arch.bert import write_encoder
from toolchain.convert.arch.text import text_arch
from toolchain.convert.architecture import HParams, Split
from toolchain.convert.metadata import Metadata

#: llama.cpp's LLAMA_POOLING_TYPE_RANK: a relevance score from the classifier head
POOLING_RANK = 4


def _offset(h: HParams) -> int:
    return h.int("pad_token_id", default=-1) + 1


def _metadata(h: HParams, md: Metadata) -> None:
    write_encoder(h, md)
    md.u32("{arch}.context_length", h.int("max_position_embeddings") - _offset(h))
    labels = h.get("id2label", default=None)
    if isinstance(labels, dict) and labels and labels != {"0": "LABEL_0", "1": "LABEL_1"}:
        md.strings(
            "{arch}.classifier.output_labels",
            [str(v) for _k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))],
        )
    if "XLMRobertaForSequenceClassification" in h.get("architectures", default=[]):
        md.u32("{arch}.pooling_type", POOLING_RANK)


def _positions(w: np.ndarray, h: HParams) -> np.ndarray:
    return np.ascontiguousarray(w[_offset(h) :])


ARCH = text_arch(
    ("XLMRobertaModel", "XLMRobertaForSequenceClassification"),
    "bert",
    family="XLM-RoBERTa",
    metadata=_metadata,
    vocab=("ugm",),
    shapes={},
    renames=((r"^roberta\.", ""),),
    skip=(r"embeddings\.position_ids", r"pooler\..*", r"lm_head\..*"),
    keep_f32=frozenset({"token_types.weight"}),
    splits={
        "position_embd.weight": (
            Split("position_embd.weight", lambda s, h: (s[0] - _offset(h), s[1]), _positions),
        )
    },
)
