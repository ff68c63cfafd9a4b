"""all-MiniLM-L6-v2 (BERT + sentence-transformers mean pooling) converted to F16.

The conformance file records what the reference converter writes: every metadata value
(arrays as the sha256 of their Go-JSON encoding) and every tensor's sha256. Ours must be
identical, key for key and tensor for tensor. Then the embeddings llama.cpp computes
from our file must match sentence-transformers' (cosine >= 0.999 on 50 sentences).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from tests.toolchain.convert.oracle import load_llama
from toolchain import gojson
from toolchain.convert import convert_hf_dir

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta.",
    "The new movie is awesome.",
    "The cat plays in the garden.",
    "A woman watches TV.",
    "The new movie is so great.",
    "Do you like pizza?",
    "How old are you?",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Machine learning models learn patterns from data.",
    "Neural networks are loosely inspired by the brain.",
    "The stock market fell sharply on Monday morning.",
    "She sells sea shells by the sea shore.",
    "It was the best of times, it was the worst.",
    "To be, or not to be, that is the question.",
    "Colorless green ideas sleep furiously.",
    "Please reset your password using the link below.",
    "The meeting was moved to 3 pm.",
    "Water boils at 100 degrees Celsius at sea level.",
    "E = mc^2 relates mass and energy.",
    "The quick brown fox jumps over the lazy dog.",
    "Das ist ein schönes Haus.",
    "Je voudrais un café, s'il vous plaît.",
    "¿Dónde está la biblioteca?",
    "Москва — столица России.",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "东京是日本的首都。",
    "私は学生です。",
    "Emoji test 🚀🔥 and smiles 😀😃",
    "def square(x): return x * x",
    "SELECT name FROM users WHERE id = 42;",
    "for i in range(10): print(i)",
    "https://example.com/a/b?c=d",
    "Version 2.3.1 was released on 2024-05-17.",
    "Call me at +1 (555) 123-4567.",
    "UPPERCASE WORDS AND lowercase words",
    "    leading and trailing spaces    ",
    "tabs\tand\nnewlines\nin text",
    "Résumé, naïve, façade, coöperate.",
    "The mitochondria is the powerhouse of the cell.",
    "Rain is expected tomorrow.",
    "I can't believe it's already December!",
    'He said: "Wait for me."',
    "A very long sentence " + "that keeps going " * 12 + "until it ends.",
    "Yes.",
    "No!",
    "Antidisestablishmentarianism is a long word.",
    "🙂",
]


def _value(field: Any) -> str:
    """A metadata value as the conformance file writes it."""
    value = field.contents()
    if field.types[0] == GGUFValueType.ARRAY:
        data = gojson.encode(list(value), newline=False)
        return hashlib.sha256(data).hexdigest()
    if isinstance(value, bool):
        return "true" if value else "false"
    if field.types[0] == GGUFValueType.FLOAT32:
        return str(np.float32(value))
    return str(value)


@pytest.fixture(scope="module")
def minilm_gguf(minilm_dir: Path, converted) -> Path:
    return converted(minilm_dir, "f16")


def test_metadata_and_tensors_equal_conformance(minilm_gguf: Path, conformance_dir: Path) -> None:
    expected = json.loads((conformance_dir / "convert" / "all-MiniLM-L6-v2.json").read_text())
    reader = GGUFReader(minilm_gguf)
    ours = {k: _value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    ours.update({t.name: hashlib.sha256(t.data.tobytes()).hexdigest() for t in reader.tensors})
    assert ours == expected


@pytest.mark.oracle
def test_embeddings_match_sentence_transformers(minilm_gguf: Path, minilm_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    want = reference.encode(SENTENCES, normalize_embeddings=True)
    llm = load_llama(minilm_gguf, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512)
    try:
        got = np.array([llm.embed(s, normalize=True) for s in SENTENCES], dtype=np.float32)
    finally:
        llm.close()
    cosines = (got * want).sum(axis=1)
    assert cosines.min() >= 0.999, SENTENCES[int(cosines.argmin())]


def test_vocab_txt_alone_gives_the_same_vocabulary(
    minilm_dir: Path, minilm_gguf: Path, tmp_path: Path
) -> None:
    """Older BERT checkpoints ship vocab.txt without tokenizer.json."""
    import shutil

    src = Path(shutil.copytree(minilm_dir, tmp_path / "model"))
    (src / "tokenizer.json").unlink()
    out = tmp_path / "out.gguf"
    convert_hf_dir(src, out, "f16")

    def fields(path: Path) -> dict[str, Any]:
        return {k: f.contents() for k, f in GGUFReader(path).fields.items()}

    assert fields(out) == fields(minilm_gguf)
