"""The engine over llama.cpp: sampling, stops, limits, cancel, shift, adapters, KV types."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.embedding import Embedder
from runtime.engine import Engine, Event, Failed, Finished, Generation, Token
from runtime.errors import ModelLoadError
from runtime.llama import ContextSettings, LlamaModel
from runtime.load_plan import kv_type
from runtime.sampling import SamplingSpec

PROMPT = "<|im_start|>user\nWrite a story about a lighthouse.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model(smollm2_model: LlamaModel) -> LlamaModel:
    return smollm2_model


@pytest.fixture(scope="module")
def engine(model: LlamaModel) -> Iterator[Engine]:
    e = Engine(model, ContextSettings(n_ctx=2 * 512, n_seq_max=2, n_threads=1, n_threads_batch=1))
    yield e
    e.close()


class Run:
    """A submitted generation and what came back."""

    def __init__(self, engine: Engine, tokens: list[int], **kw: object) -> None:
        self.text: list[str] = []
        self.end: Finished | Failed | None = None
        self.done = threading.Event()
        self.first = threading.Event()
        self.job = Generation(tokens, kw.pop("sampling", SamplingSpec(seed=3)), self.on, **kw)  # type: ignore[arg-type]
        engine.submit(self.job)

    def on(self, event: Event) -> None:
        if isinstance(event, Token):
            self.text.append(event.text)
            self.first.set()
        else:
            self.end = event
            self.done.set()

    def wait(self) -> Finished:
        assert self.done.wait(300)
        assert isinstance(self.end, Finished), self.end
        return self.end


def test_same_seed_same_answer(engine: Engine, model: LlamaModel) -> None:
    tokens = model.tokenize(PROMPT)
    a, b = Run(engine, tokens, num_predict=20), Run(engine, tokens, num_predict=20)
    fa, fb = a.wait(), b.wait()
    assert "".join(a.text) == "".join(b.text)
    assert fa.reason == fb.reason == "length" and fa.eval_tokens == 20
    assert fa.prompt_tokens == len(tokens) and fa.context[: len(tokens)] == tokens
    # the second request found the prompt in a slot's cache
    again = Run(engine, tokens, num_predict=5)
    assert again.wait().cached_tokens == len(tokens) - 1


def test_stop_strings_and_greedy(engine: Engine, model: LlamaModel) -> None:
    tokens = model.tokenize(PROMPT)
    greedy = SamplingSpec(temperature=0)
    whole = Run(engine, tokens, num_predict=30, sampling=greedy)
    whole.wait()
    text = "".join(whole.text)
    word = text.split()[3]
    cut = Run(engine, tokens, num_predict=30, sampling=greedy, stop=(word,))
    end = cut.wait()
    assert end.reason == "stop"
    assert "".join(cut.text) == text[: text.index(word)]


def test_cancel_frees_the_slot(engine: Engine, model: LlamaModel) -> None:
    tokens = model.tokenize(PROMPT)
    runs = [
        Run(engine, tokens, num_predict=100000, sampling=SamplingSpec(seed=i)) for i in range(2)
    ]
    for r in runs:
        assert r.first.wait(300)
        r.job.cancel()
    engine.wake()
    for r in runs:
        assert r.done.wait(300)
        assert isinstance(r.end, Failed) and r.end.status == 499
    assert Run(engine, tokens, num_predict=3).wait().eval_tokens == 3


def test_context_shift_and_truncation(model: LlamaModel) -> None:
    small = Engine(model, ContextSettings(n_ctx=64, n_seq_max=1, n_threads=1, n_threads_batch=1))
    n = small.n_ctx_seq  # llama.cpp rounds the context up (256 here)
    try:
        # counting goes on without an end of text; the context fills up after a few numbers
        tokens = model.tokenize(", ".join(str(i) for i in range(1, 50)) + ",")
        assert n - 100 < len(tokens) < n
        greedy = SamplingSpec(temperature=0)
        shifted = Run(small, tokens, num_predict=100, sampling=greedy)
        end = shifted.wait()
        assert (end.reason, end.eval_tokens) == ("length", 100)  # went on past the context
        capped = Run(small, tokens, num_predict=100, shift=False, sampling=greedy)
        end = capped.wait()
        # stops when the context is full (the last token is sampled from the full context)
        assert (end.reason, len(tokens) + end.eval_tokens) == ("length", n + 1)
        long_prompt = model.tokenize(PROMPT * 20)
        refused = Run(small, long_prompt, num_predict=4, truncate=False)
        assert refused.done.wait(300)
        assert isinstance(refused.end, Failed)
        assert (refused.end.status, refused.end.message) == (
            400,
            "input length exceeds the context length",
        )
        kept = Run(small, long_prompt, num_predict=4)
        assert kept.wait().prompt_tokens == n - 1
    finally:
        small.close()


def test_quantized_kv_cache(model: LlamaModel) -> None:
    settings = ContextSettings(n_ctx=256, flash_attention=True, kv_cache_type="q8_0", n_threads=1)
    q8 = Engine(model, settings)
    try:
        run = Run(q8, model.tokenize(PROMPT), num_predict=8, sampling=SamplingSpec(temperature=0))
        assert run.wait().eval_tokens == 8 and "".join(run.text).strip()
    finally:
        q8.close()
    # without flash attention the reference keeps an f16 cache
    assert kv_type(False, "q8_0") == "f16"
    assert kv_type(None, "q4_0") == "q4_0"


def test_lora_adapter_and_bad_files(
    smollm2_gguf: Path, smollm2_lora_gguf: Path, tmp_path: Path
) -> None:
    adapted = LlamaModel(str(smollm2_gguf), (str(smollm2_lora_gguf),))
    try:
        engine = Engine(adapted, ContextSettings(n_ctx=256, n_threads=1))
        try:
            run = Run(engine, adapted.tokenize(PROMPT), num_predict=4)
            assert run.wait().eval_tokens == 4
        finally:
            engine.close()
    finally:
        adapted.close()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="unable to load model"):
        LlamaModel(str(junk))
    with pytest.raises(ModelLoadError, match="unable to load adapter"):
        LlamaModel(str(smollm2_gguf), (str(junk),)).close()


def test_embeddings_match_llama_cpp_python(model: LlamaModel, smollm2_gguf: Path) -> None:
    from llama_cpp import Llama

    embedder = Embedder(model, 512, threads=1)
    texts = ["hello world", "the cat sat on the mat"]
    ours = embedder.embed(texts).vectors
    embedder.close()
    ref = Llama(str(smollm2_gguf), embedding=True, n_ctx=512, pooling_type=1, verbose=False)
    try:
        theirs = ref.embed(texts)
    finally:
        ref.close()
    for a, b in zip(np.array(ours), np.array(theirs), strict=True):
        assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.999
