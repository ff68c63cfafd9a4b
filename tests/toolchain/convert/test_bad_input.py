"""Bad input gets a ConvertError naming the offending file, and leaves no output behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from toolchain.convert import SUPPORTED, ConvertError, convert_hf_dir, convert_lora
from toolchain.errors import MfcError
from toolchain.progress import ProgressEvent


@pytest.fixture
def model_copy(tiny_models_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of tiny-llama."""
    return Path(shutil.copytree(tiny_models_dir / "tiny-llama", tmp_path / "model"))


def _fails(src: Path, out: Path, file: str, message: str) -> ConvertError:
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(src, out, "f16")
    err = info.value
    assert isinstance(err, MfcError)
    assert Path(err.file).name == file
    assert err.message.startswith(err.file)
    assert message in err.message
    assert not out.exists()
    assert list(out.parent.glob(f".{out.name}*")) == []  # no temp file either
    return err


def test_no_config_json(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "config.json").unlink()
    err = _fails(model_copy, tmp_path / "out.gguf", "config.json", "missing")
    assert err.hint and "Hugging Face model directory" in err.hint


def test_not_a_directory(tmp_path: Path) -> None:
    _fails(tmp_path / "nope", tmp_path / "out.gguf", "nope", "no such directory")


def test_unsupported_architecture(model_copy: Path, tmp_path: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["architectures"] = ["FalconForCausalLM"]
    (model_copy / "config.json").write_text(json.dumps(config))
    err = _fails(
        model_copy,
        tmp_path / "out.gguf",
        "config.json",
        "unsupported architecture 'FalconForCausalLM'",
    )
    assert err.hint is not None
    for name in SUPPORTED:
        assert name in err.hint
    assert "Gemma3ForCausalLM" in SUPPORTED and "NomicBertModel" in SUPPORTED


def test_shape_not_matching_config(model_copy: Path, tmp_path: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["intermediate_size"] = 96
    (model_copy / "config.json").write_text(json.dumps(config))
    err = _fails(model_copy, tmp_path / "out.gguf", "model.safetensors", "has shape")
    assert "[64, 128], but config.json implies [64, 96]" in err.message


def test_more_layers_in_config_than_weights(model_copy: Path, tmp_path: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (model_copy / "config.json").write_text(json.dumps(config))
    _fails(model_copy, tmp_path / "out.gguf", "model", "incomplete checkpoint")


def _rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(raw) == n
    path.write_bytes(data[:8] + raw + data[8 + n :])


def test_truncated_safetensors(model_copy: Path, tmp_path: Path) -> None:
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    err = _fails(model_copy, tmp_path / "out.gguf", "model.safetensors", "truncated")
    assert err.hint and "fetch the file again" in err.hint


def test_truncated_header(model_copy: Path, tmp_path: Path) -> None:
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _fails(model_copy, tmp_path / "out.gguf", "model.safetensors", "truncated")


def test_unsupported_dtype(model_copy: Path, tmp_path: Path) -> None:
    def to_int(header: dict) -> None:
        header["model.layers.0.mlp.up_proj.weight"]["dtype"] = "I32"  # same width as F32

    _rewrite_header(model_copy / "model.safetensors", to_int)
    err = _fails(model_copy, tmp_path / "out.gguf", "model.safetensors", "dtype I32")
    assert "model.layers.0.mlp.up_proj.weight" in err.message


def test_missing_tokenizer(model_copy: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer.model"):
        (model_copy / name).unlink()
    err = _fails(model_copy, tmp_path / "out.gguf", "model", "no tokenizer")
    assert "tokenizer.model" in err.message


def test_spm_vocabulary_without_tokenizer_model(model_copy: Path, tmp_path: Path) -> None:
    (model_copy / "tokenizer.model").unlink()
    _fails(model_copy, tmp_path / "out.gguf", "tokenizer.model", "SentencePiece")


def test_missing_output_directory(model_copy: Path, tmp_path: Path) -> None:
    _fails(model_copy, tmp_path / "missing" / "out.gguf", "out.gguf", "does not exist")


def test_failure_mid_write_keeps_previous_output(model_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.gguf"
    out.write_bytes(b"previous")

    def interrupt(event: ProgressEvent) -> None:
        if event.completed:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_hf_dir(model_copy, out, "f16", progress=interrupt)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_lora_for_a_different_base(tiny_models_dir: Path, converted, tmp_path: Path) -> None:
    out = tmp_path / "lora.gguf"
    base = converted(tiny_models_dir / "tiny-qwen3", "f16")
    with pytest.raises(ConvertError) as info:
        convert_lora(tiny_models_dir / "tiny-llama-lora", out, base=base)
    assert Path(info.value.file).name == "adapter_model.safetensors"
    assert "different base model" in (info.value.hint or "")
    assert not out.exists()


def test_lora_without_adapter_config(tmp_path: Path, tiny_models_dir: Path) -> None:
    (tmp_path / "adapter").mkdir()
    with pytest.raises(ConvertError) as info:
        convert_lora(
            tmp_path / "adapter", tmp_path / "lora.gguf", base=tiny_models_dir / "tiny-llama"
        )
    assert Path(info.value.file).name == "adapter_config.json"
