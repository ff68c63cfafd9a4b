"""What the converter's breadth families share (test_breadth*.py): the tiny models, the
prompts and tolerances llama.cpp is judged by, the reasons for differences from
llama.cpp's converter that several families give, and `Family`, which makes a family's
standard tests from its data:

- llama.cpp (llama-cpp-python) running our F32 GGUF against transformers running the
  checkpoint: max |Δlogit| / max |logit| <= TOLERANCE over every position of every
  prompt, the same argmax everywhere, and the same GREEDY_TOKENS-token continuation;
- llama.cpp's tokenizer from our GGUF against the checkpoint's tokenizer on the shared
  test texts: identical ids;
- llama.cpp's own converter on the same directory: identical tensors (names, types,
  shapes, bytes) and metadata, except the family's listed differences, each with its
  reason (and every listed one still there).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fixtures.generate_tiny_models import TinyModel, build_in_place, build_tiny
from fixtures.tiny_breadth import BY_NAME as BREADTH
from fixtures.tiny_breadth import ENCODERS_BY_NAME as ENCODERS
from fixtures.tiny_gemma4 import BY_NAME as GEMMA4
from fixtures.tiny_laguna_glmocr import BY_NAME as LAGUNA_GLMOCR
from fixtures.tiny_nemotronh import BY_NAME as NEMOTRONH
from fixtures.tiny_qwen_next import BY_NAME as QWEN_NEXT
from tests.conftest import MODELS
from tests.toolchain.convert import oracle
from tests.toolchain.convert.conftest import Converter
from tests.toolchain.convert.reference_convert import (
    assert_differences_explained,
    differences,
    fields,
    run_reference,
)

TOLERANCE = 1e-3
GREEDY_TOKENS = 16
PROMPTS = [
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Le renard brun saute par-dessus le chien paresseux. 東京の天気は晴れです 🌞",
]

FLAGS = {
    "tokenizer.ggml.add_eos_token": "ours copies tokenizer_config.json's add_eos_token "
    "(false); the reference infers add_sep_token (false) from the post-processor instead. "
    "Both are llama.cpp's defaults, so neither changes tokenization",
    "tokenizer.ggml.add_sep_token": "see add_eos_token",
}
SPM_ADDED = {
    "tokenizer.ggml.scores": "the reference reads added tokens only from added_tokens.json "
    "and tokenizer_config.json's added_tokens_decoder, which transformers 5 no longer "
    "writes; ours reads tokenizer.json's added_tokens, as transformers does, and gives "
    "them the added-token score -1000",
    "tokenizer.ggml.token_type": "same cause: ours types tokenizer.json's special tokens "
    "CONTROL and its other added tokens USER_DEFINED (matched whole, as transformers does)",
}
SPM_MASK = {
    **SPM_ADDED,
    "tokenizer.ggml.tokens": "same cause: an added token past the SentencePiece model "
    "(Gemma's <mask>, id 800) stays [PAD800] in the reference",
}
SPACE_PREFIX = {
    "tokenizer.ggml.add_space_prefix": "ours records the SentencePiece model's "
    "add_dummy_prefix (true); the reference leaves it to llama.cpp's default for "
    "llama-type vocabularies, which is also true",
}

#: every breadth family's tiny models by name (the single-model families, Gemma 3n and
#: NomicBERT MoE, have builders of their own)
TINY_MODELS: dict[str, TinyModel] = {
    **BREADTH,
    **ENCODERS,
    **GEMMA4,
    **LAGUNA_GLMOCR,
    **NEMOTRONH,
    **QWEN_NEXT,
}


def tiny(name: str) -> Path:
    """The generated model directory (built on first use, then cached by version stamp)."""
    return build_in_place(MODELS / name, functools.partial(build_tiny, TINY_MODELS[name]))


def hf_model(path: Path) -> tuple[Any, Any]:
    """The checkpoint in transformers' class for it (a multimodal one fed text only)."""
    import torch
    import transformers

    model_class = getattr(
        transformers, json.loads((path / "config.json").read_text())["architectures"][0]
    )
    model = model_class.from_pretrained(str(path), dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(str(path))


def assert_runs_like_transformers(src: Path, gguf: Path) -> None:
    """llama.cpp on `gguf` against transformers on `src`: logits within TOLERANCE at every
    position of PROMPTS, the same argmax, the same greedy continuation."""
    model, tok = hf_model(src)
    oracle.assert_runs_like_transformers(gguf, model, tok, PROMPTS, TOLERANCE, GREEDY_TOKENS)


def assert_tokenizes_like_transformers(src: Path, gguf: Path) -> None:
    """llama.cpp's tokenizer from `gguf` gives the ids of `src`'s own on the shared texts."""
    from transformers import AutoTokenizer

    oracle.assert_tokenizes_like(gguf, AutoTokenizer.from_pretrained(str(src)))


def assert_same_as_reference(
    src: Path,
    ours: Path,
    tmp_path: Path,
    explained: Mapping[str, str],
    outtype: str = "f32",
    flags: tuple[str, ...] = (),
    raw_config: bool = False,
) -> None:
    """llama.cpp's converter on `src` (at `outtype`, ours' too; with `flags`; reading
    config.json as written if `raw_config`) writes what `ours` holds, but for `explained`."""
    pre = fields(ours).get("tokenizer.ggml.pre")
    theirs = run_reference(
        src,
        tmp_path / "reference.gguf",
        outtype,
        pre if fields(ours)["tokenizer.ggml.model"] == "gpt2" else None,
        flags,
        raw_config,
    )
    assert_differences_explained(differences(ours, theirs), explained)


GeneratedTest = Callable[..., None]


@dataclass(frozen=True)
class Family:
    """Tiny models judged alike: their names and, for each, what llama.cpp's converter
    writes differently and why (empty: nothing). Its methods make the standard tests,
    parametrized by model name; a family's test file binds them to test_* names."""

    names: tuple[str, ...]
    differences: Mapping[str, Mapping[str, str]]
    #: the output types compared with llama.cpp's converter
    outtypes: tuple[str, ...] = ("f32",)
    #: the reference converter's extra command-line flags, by model
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: models whose config.json the reference reads as written, not through transformers
    raw_config: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert set(self.differences) == set(self.names), "each model's differences, listed"

    def logits_test(self) -> GeneratedTest:
        """llama.cpp's logits and greedy tokens on the F32 file against transformers'."""

        @pytest.mark.parametrize("name", self.names)
        def test_logits_and_greedy_match_transformers(name: str, converted: Converter) -> None:
            src = tiny(name)
            assert_runs_like_transformers(src, converted(src, "f32"))

        return test_logits_and_greedy_match_transformers

    def token_ids_test(self) -> GeneratedTest:
        """llama.cpp's token ids from the F32 file against the checkpoint's tokenizer."""

        @pytest.mark.parametrize("name", self.names)
        def test_token_ids_match_transformers(name: str, converted: Converter) -> None:
            src = tiny(name)
            assert_tokenizes_like_transformers(src, converted(src, "f32"))

        return test_token_ids_match_transformers

    def reference_test(self) -> GeneratedTest:
        """The same file as llama.cpp's converter writes, but for the listed differences."""
        cases = [(name, outtype) for name in self.names for outtype in self.outtypes]
        many = len(self.outtypes) > 1

        @pytest.mark.slow
        @pytest.mark.parametrize(
            ("name", "outtype"), cases, ids=[f"{n}-{o}" if many else n for n, o in cases]
        )
        def test_same_gguf_as_llama_cpp_converter(
            name: str, outtype: str, converted: Converter, tmp_path: Path
        ) -> None:
            src = tiny(name)
            assert_same_as_reference(
                src,
                converted(src, outtype),
                tmp_path,
                self.differences[name],
                outtype,
                self.flags.get(name, ()),
                name in self.raw_config,
            )

        return test_same_gguf_as_llama_cpp_converter
