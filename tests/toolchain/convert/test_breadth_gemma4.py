"""Gemma 4 (fixtures/tiny_gemma4.py): Gemma4ForCausalLM with per-layer embeddings, shared
KV layers and double-wide MLPs, and Gemma4ForConditionalGeneration's language model with
experts and keys reused as values, converted by mfc at F32 and judged as test_breadth
judges the other families:

- llama.cpp running our GGUF against transformers running the checkpoint: max |Δlogit| /
  max |logit| <= 1e-3 over every position of every prompt (measured 2e-5..3e-5), the
  same argmax everywhere, the same 16-token greedy continuation;
- llama.cpp's "gemma4" tokenizer from our GGUF against transformers' on the shared texts;
- llama.cpp's own converter on the same directory, at F32 and F16: identical tensors
  (types and bytes) and metadata but for REFERENCE_DIFFERENCES.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.tiny_gemma4 import BY_NAME
from tests.toolchain.convert.breadth import FLAGS, Family, tiny
from tests.toolchain.convert.corpus import LEADING_WHITESPACE
from tests.toolchain.convert.oracle import assert_tokenizes_like, load_llama
from tests.toolchain.convert.reference_convert import fields
from toolchain.convert import ConvertError, convert_hf_dir

pytestmark = pytest.mark.oracle

#: what differs from llama.cpp's converter output, and why
REFERENCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-gemma4": FLAGS,
    "tiny-gemma4-vl": {
        **FLAGS,
        "gemma4.final_logit_softcapping": "config.json has no final soft-capping; the "
        "reference then writes no key and llama.cpp caps Gemma 4's logits at its default "
        "30: its file is 0.60 relative from transformers' logits on the test prompts "
        "(ours 2e-5), so ours writes 0, which turns the cap off",
    },
}


#: at F16 too: the same tensor types (scales, norms and rope_freqs F32; the per-layer
#: embedding F16) and bytes
FAMILY = Family(tuple(BY_NAME), REFERENCE_DIFFERENCES, outtypes=("f32", "f16"))
test_logits_and_greedy_match_transformers = FAMILY.logits_test()
test_same_gguf_as_llama_cpp_converter = FAMILY.reference_test()


@pytest.mark.parametrize("name", list(BY_NAME))
def test_token_ids_match_transformers(name: str, converted) -> None:
    """The shared texts, and those starting with whitespace (no dummy prefix here: spaces
    become "▁" and nothing is prepended, in both)."""
    from transformers import AutoTokenizer

    src = tiny(name)
    tok = AutoTokenizer.from_pretrained(str(src))
    gguf = converted(src, "f32")
    assert_tokenizes_like(gguf, tok)
    llm = load_llama(gguf, vocab_only=True)
    try:
        for text in LEADING_WHITESPACE:
            ids = llm.tokenize(text.encode(), add_bos=True, special=True)
            assert ids == tok(text)["input_ids"], text
            assert llm.detokenize(ids[1:]).decode() == text
    finally:
        llm.close()


def test_tokenizer_is_gemma4_bpe(converted) -> None:
    """tokenizer.json's SentencePiece-style BPE becomes llama.cpp's "gemma4" model: merges,
    byte pieces typed BYTE, BOS always added, the turn markers special."""
    found = fields(converted(tiny("tiny-gemma4"), "f32"))
    tokens, types = found["tokenizer.ggml.tokens"], found["tokenizer.ggml.token_type"]
    assert found["tokenizer.ggml.model"] == "gemma4"
    assert found["tokenizer.ggml.merges"]
    assert found["tokenizer.ggml.add_bos_token"] is True
    assert types[tokens.index("<0x41>")] == 6  # BYTE
    assert types[tokens.index("<|turn>")] == 3  # CONTROL
    # a Gemma 4 marker llama.cpp's chat parser must see in the output
    assert types[tokens.index("<|channel>")] == 4  # USER_DEFINED


def test_layer_kinds_reach_llama_cpp(converted) -> None:
    """The keys that tell llama.cpp the two kinds of attention layer, the shared KV
    layers and the per-layer embeddings, read from transformers 5's per_layer_config."""
    found = fields(converted(tiny("tiny-gemma4"), "f32"))
    assert found["gemma4.attention.sliding_window_pattern"] == [True, False, True, False]
    assert (found["gemma4.attention.key_length"], found["gemma4.attention.key_length_swa"]) == (
        32,
        16,
    )
    assert found["gemma4.attention.shared_kv_layers"] == 2
    assert found["gemma4.feed_forward_length"] == [128, 128, 256, 256]
    assert found["gemma4.embedding_length_per_layer_input"] == 8
    vl = fields(converted(tiny("tiny-gemma4-vl"), "f32"))
    assert vl["gemma4.attention.head_count_kv"] == [2, 2, 1]


def test_per_layer_embedding_for_another_vocabulary_is_refused(tmp_path: Path) -> None:
    """llama.cpp reads the per-layer embedding with a row per token: a checkpoint whose
    per-layer vocabulary differs would convert to a file it cannot load."""
    copy = Path(shutil.copytree(tiny("tiny-gemma4"), tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    config["vocab_size_per_layer_input"] = 700
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert info.value.file == str(copy / "config.json")
    assert "vocab_size_per_layer_input (700) differs from vocab_size (801)" in info.value.message
