"""The converter's parts against independent implementations: sharded checkpoints, the
sentencepiece model parser, the float encodings, pre-tokenizer identification, progress
and memory."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import quantize

from toolchain.convert import convert_hf_dir
from toolchain.convert.outtype import encode
from toolchain.convert.vocab.pretokenizer import identify
from toolchain.convert.vocab.sentencepiece_model import read_sentencepiece_model
from toolchain.progress import ProgressEvent


def _tensors(path: Path) -> dict[str, tuple[int, bytes]]:
    return {t.name: (int(t.tensor_type), t.data.tobytes()) for t in GGUFReader(path).tensors}


def test_sharded_checkpoint_equals_single_file(
    tiny_models_dir: Path, converted, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file, save_file

    src = tiny_models_dir / "tiny-llama"
    sharded = Path(shutil.copytree(src, tmp_path / "sharded"))
    (sharded / "model.safetensors").unlink()
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        file = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(sharded / file))
        weight_map.update(dict.fromkeys(part, file))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    out = tmp_path / "sharded.gguf"
    convert_hf_dir(sharded, out, "f16")
    assert _tensors(out) == _tensors(converted(src, "f16"))


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_sentencepiece_parser_matches_library(name: str, tiny_models_dir: Path) -> None:
    import sentencepiece

    path = tiny_models_dir / name / "tokenizer.model"
    ours = read_sentencepiece_model(path)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    assert ours.pieces == [sp.id_to_piece(i) for i in range(sp.vocab_size())]
    assert ours.scores == [sp.get_score(i) for i in range(sp.vocab_size())]
    for i, kind in enumerate(ours.types):
        assert (kind == 2) == sp.is_unknown(i)
        assert (kind == 3) == sp.is_control(i)
        assert (kind == 6) == sp.is_byte(i)
    assert ours.add_dummy_prefix == (name == "tiny-llama")


def test_float_encodings_match_ggml() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.standard_normal(4096).astype(np.float32) * 1e3,
            np.array(
                [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-42, 65504, 65520, 3.4e38],
                dtype=np.float32,
            ),
        ]
    )
    want = quantize(x.reshape(1, -1), GGMLQuantizationType.BF16).view(np.uint16).ravel()
    ours = np.ascontiguousarray(encode(x, None, None, GGMLQuantizationType.BF16))
    assert np.array_equal(ours.view(np.uint16).ravel(), want)


def test_pre_tokenizer_identification(tiny_models_dir: Path) -> None:
    def pre(name: str) -> object:
        return json.loads((tiny_models_dir / name / "tokenizer.json").read_text())["pre_tokenizer"]

    assert identify(pre("tiny-llama3")) == "llama-bpe"
    assert identify(pre("tiny-qwen2")) == "qwen2"
    assert identify(pre("smollm2-hf")) == "smollm"
    assert identify({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2"
    assert identify({"type": "Split", "pattern": {"Regex": "x"}}) is None


def test_unknown_pre_tokenizer_warns(tiny_models_dir: Path, tmp_path: Path) -> None:
    src = Path(shutil.copytree(tiny_models_dir / "tiny-qwen2", tmp_path / "model"))
    spec = json.loads((src / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+|."
    (src / "tokenizer.json").write_text(json.dumps(spec))
    events: list[ProgressEvent] = []
    result = convert_hf_dir(src, tmp_path / "out.gguf", "f16", progress=events.append)
    assert len(result.warnings) == 1 and "unrecognised pre-tokenizer" in result.warnings[0]
    assert any(e.status.startswith("warning: ") for e in events)
    pre = GGUFReader(tmp_path / "out.gguf").fields["tokenizer.ggml.pre"].contents()
    assert pre == "default"


def test_progress_reports_every_byte(tiny_models_dir: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    result = convert_hf_dir(
        tiny_models_dir / "tiny-qwen3", tmp_path / "out.gguf", "bf16", progress=events.append
    )
    bars = [e for e in events if e.total]
    assert bars and bars[-1].completed == bars[-1].total
    assert [e.completed for e in bars] == sorted(e.completed or 0 for e in bars)
    tensor_bytes = sum(len(d) for _t, d in _tensors(result.path).values())
    assert bars[-1].total == tensor_bytes
    assert events[-1].status == f"wrote {result.path}"
    assert result.file_type == 32 and result.architecture == "qwen3"


def test_architecture_specific_metadata(tiny_models_dir: Path, converted) -> None:
    def fields(name: str) -> dict[str, object]:
        reader = GGUFReader(converted(tiny_models_dir / name, "f16"))
        return {k: f.contents() for k, f in reader.fields.items()}

    gemma = fields("tiny-gemma3")
    assert gemma["gemma3.attention.sliding_window"] == 16
    assert gemma["gemma3.attention.sliding_window_pattern"] == [True, False]
    assert gemma["gemma3.rope.freq_base_swa"] == 10000.0
    assert gemma["tokenizer.ggml.add_space_prefix"] is False
    bert = fields("tiny-bert")
    assert bert["bert.pooling_type"] == 2  # CLS, from 1_Pooling/config.json
    assert bert["tokenizer.ggml.bos_token_id"] == 2  # [CLS] is not at bert-base's 101
    assert fields("tiny-nomic-bert")["nomic-bert.pooling_type"] == 1
    llama3 = {t.name for t in GGUFReader(converted(tiny_models_dir / "tiny-llama3", "f16")).tensors}
    assert "rope_freqs.weight" in llama3


@pytest.mark.slow
def test_peak_memory_tracks_the_largest_tensor(tiny_models_dir: Path, tmp_path: Path) -> None:
    src = tiny_models_dir / "smollm2-hf"
    largest_f32 = 49152 * 576 * 4  # the embedding matrix
    tracemalloc.start()
    try:
        convert_hf_dir(src, tmp_path / "out.gguf", "f32")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < largest_f32, f"peak {peak / 2**20:.0f} MiB"
