"""Sampler chains for llama.cpp, built from request options, and `format` grammars."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
from llama_cpp import llama_grammar

from runtime.errors import ApiError
from runtime.schema_grammar import schema_to_gbnf
from toolchain.frontend.parameters import ApiOptions

_DEFAULTS = ApiOptions()


@dataclass(frozen=True)
class SamplingSpec:
    """What decides the next token: the reference's sampling options (defaults from the one
    options table, `ApiOptions`) plus a grammar."""

    temperature: float = _DEFAULTS.temperature
    top_k: int = _DEFAULTS.top_k
    top_p: float = _DEFAULTS.top_p
    min_p: float = _DEFAULTS.min_p
    typical_p: float = _DEFAULTS.typical_p
    repeat_last_n: int = _DEFAULTS.repeat_last_n
    repeat_penalty: float = _DEFAULTS.repeat_penalty
    presence_penalty: float = _DEFAULTS.presence_penalty
    frequency_penalty: float = _DEFAULTS.frequency_penalty
    seed: int = _DEFAULTS.seed
    grammar: str | None = None

    @property
    def penalizes(self) -> bool:
        return self.repeat_last_n != 0 and (
            self.repeat_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


class Sampler:
    """One request's llama_sampler chain: penalties, grammar, top-k/typical/top-p/min-p,
    temperature, then a seeded draw (greedy at temperature 0), the order llama.cpp uses."""

    def __init__(self, spec: SamplingSpec, vocab: Any, n_ctx: int) -> None:
        """`vocab` is the model's llama_vocab; `n_ctx` is the window `repeat_last_n: -1` means."""
        params = lc.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain = lc.llama_sampler_chain_init(params)
        self._penalties: Any = None
        if spec.penalizes:
            last_n = n_ctx if spec.repeat_last_n < 0 else spec.repeat_last_n
            # llama-cpp-python 0.3.36's signature (n_vocab first); a ctypes call with the
            # wrong arity raises, so this line moves with the pin (README)
            self._penalties = lc.llama_sampler_init_penalties(
                int(lc.llama_vocab_n_tokens(vocab)),
                last_n,
                spec.repeat_penalty,
                spec.frequency_penalty,
                spec.presence_penalty,
            )
            self._add(self._penalties)
        if spec.grammar is not None:
            grammar = lc.llama_sampler_init_grammar(vocab, spec.grammar.encode("utf-8"), b"root")
            if not grammar:
                self.close()
                raise ApiError(500, "failed to initialize the grammar for this format")
            self._add(grammar)
        if spec.temperature <= 0:
            self._add(lc.llama_sampler_init_greedy())
            return
        if spec.top_k > 0:
            self._add(lc.llama_sampler_init_top_k(spec.top_k))
        if 0 < spec.typical_p < 1:
            self._add(lc.llama_sampler_init_typical(spec.typical_p, 1))
        if 0 < spec.top_p < 1:
            self._add(lc.llama_sampler_init_top_p(spec.top_p, 1))
        if spec.min_p > 0:
            self._add(lc.llama_sampler_init_min_p(spec.min_p, 1))
        self._add(lc.llama_sampler_init_temp(spec.temperature))
        seed = lc.LLAMA_DEFAULT_SEED if spec.seed < 0 else spec.seed & 0xFFFFFFFF
        self._add(lc.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        lc.llama_sampler_chain_add(self.chain, sampler)

    def remember_prompt(self, tokens: list[int]) -> None:
        """Feed prompt tokens to the repetition penalties only (never to the grammar)."""
        if self._penalties is not None:
            for token in tokens:
                lc.llama_sampler_accept(self._penalties, token)

    def sample(self, ctx: Any, index: int) -> int:
        """Draw the next token from the logits at batch position `index` (and accept it)."""
        return int(lc.llama_sampler_sample(self.chain, ctx, index))

    def close(self) -> None:
        if self.chain:
            lc.llama_sampler_free(self.chain)
            self.chain = None


def grammar_for_format(fmt: Any) -> str | None:
    """The GBNF grammar a request's `format` asks for: None, JSON, or a JSON schema.

    Raises the reference's error for anything else.
    """
    if fmt is None or fmt in ("", "null"):
        return None
    if fmt == "json":
        return llama_grammar.JSON_GBNF
    if isinstance(fmt, dict):
        return _schema_grammar(json.dumps(fmt))  # property order is output order
    raw = json.dumps(fmt, separators=(",", ":"))
    # the reference fails inside the runner, so this surfaces as a 500
    raise ApiError(500, f'invalid format: {raw}; expected "json" or a valid JSON Schema object')


@functools.lru_cache(maxsize=64)
def _schema_grammar(schema: str) -> str:
    return schema_to_gbnf(json.loads(schema))
