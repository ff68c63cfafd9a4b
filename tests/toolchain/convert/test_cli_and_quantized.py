"""`mfc convert` on the command line, and quantized output types through `quant`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gguf import GGUFReader

from tests.toolchain.convert.oracle import hf_logits, llama_logits, load_llama, relative_error
from tests.toolchain.convert.test_decoders import assert_same_choices
from toolchain.convert import convert_hf_dir


def _mfc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_json(tiny_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    run = _mfc(
        "convert", str(tiny_models_dir / "tiny-qwen2"), str(out), "--outtype", "bf16", "--json"
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert any(e.get("total") for e in lines)  # byte progress for CI
    result = lines[-1]
    assert result["status"] == "success" and result["path"] == str(out)
    assert result["architecture"] == "qwen2" and result["file_type"] == 32
    assert GGUFReader(out).fields["general.file_type"].contents() == 32


def test_cli_lora(tiny_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora.gguf"
    run = _mfc(
        "convert",
        str(tiny_models_dir / "tiny-llama-lora"),
        str(out),
        "--lora-base",
        str(tiny_models_dir / "tiny-llama"),
    )
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout
    assert GGUFReader(out).fields["general.type"].contents() == "adapter"


def test_cli_errors(tiny_models_dir: Path, tmp_path: Path) -> None:
    missing = _mfc("convert", str(tmp_path / "nope"), str(tmp_path / "x.gguf"))
    assert missing.returncode == 1
    assert f"error: {tmp_path / 'nope'}: no such directory" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_type = _mfc(
        "convert", str(tiny_models_dir / "tiny-qwen2"), str(tmp_path / "x.gguf"), "--outtype", "q9"
    )
    assert bad_type.returncode == 2
    assert "unknown output type 'q9'" in bad_type.stderr and "q4_k_m" in bad_type.stderr
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("outtype", ["q8_0", "q4_K_M"])
def test_quantized_outtype_equals_convert_then_quantize(
    outtype: str, tiny_models_dir: Path, converted, tmp_path: Path
) -> None:
    """Direct quantized output is what `quant` makes of the F32 conversion, byte for byte."""
    import quant

    src = tiny_models_dir / "tiny-llama"
    direct = tmp_path / "direct.gguf"
    result = convert_hf_dir(src, direct, outtype)
    staged = tmp_path / "staged.gguf"
    quant.quantize_file(converted(src, "f32"), staged, outtype, threads=1)

    def tensors(path: Path) -> dict[str, tuple[str, bytes]]:
        return {t.name: (t.tensor_type.name, t.data.tobytes()) for t in GGUFReader(path).tensors}

    ours, theirs = tensors(direct), tensors(staged)
    assert ours == theirs
    assert any(kind not in ("F32", "F16") for kind, _ in ours.values())
    assert result.file_type == quant.file_type(outtype).id


@pytest.mark.oracle
def test_q8_0_runs_close_to_transformers(tiny_models_dir: Path, tmp_path: Path) -> None:
    """The quantized file loads and runs: logits within 1e-1 of max |logit| (measured
    3.7e-2; this random model's weights lose more to 8-bit rounding than trained ones do).
    The byte-for-byte test above is the precise check of the tensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_models_dir / "tiny-qwen3"
    out = tmp_path / "q8.gguf"
    convert_hf_dir(src, out, "q8_0")
    ids = AutoTokenizer.from_pretrained(str(src))("The quick brown fox, 12345 🦊")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    llm = load_llama(out, logits_all=True)
    try:
        ours = llama_logits(llm, ids)
    finally:
        llm.close()
    ref = hf_logits(model, ids)
    assert relative_error(ours, ref) <= 1e-1
    assert_same_choices(ours, ref, exact=False)
