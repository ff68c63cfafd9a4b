"""The converter's input forms on the breadth models: sharded checkpoints with an index,
BF16/F16/F32 weights, per-expert tensors spread over shards, tied embeddings, blocks
past the config (multi-token prediction); and the supported set as users see it
(`mfc convert --list-architectures`, the README table, the unsupported-model error)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from quant.floats import quantize_bf16
from tests.conftest import ROOT
from tests.toolchain.convert.breadth import tiny
from toolchain.convert import SUPPORTED, ConvertError, convert_hf_dir


def _tensors(path: Path) -> dict[str, tuple[int, tuple[int, ...], bytes]]:
    return {
        t.name: (int(t.tensor_type), tuple(int(d) for d in t.shape), t.data.tobytes())
        for t in GGUFReader(path).tensors
    }


def _reshard(src: Path, dest: Path, dtype: str, shards: int) -> Path:
    """A copy of `src` with its weights in `dtype`, spread round-robin over `shards` files
    (so one layer's experts land in different files) with an index."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest)
    (dest / "model.safetensors").unlink()
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    weight_map: dict[str, str] = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = names[i::shards]
        save_file(
            {n: tensors[n].to(getattr(torch, dtype)).contiguous() for n in part},
            str(dest / file),
            metadata={"format": "pt"},
        )
        weight_map.update(dict.fromkeys(part, file))
    (dest / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return dest


@pytest.mark.parametrize(
    ("dtype", "outtype"), [("bfloat16", "bf16"), ("float16", "f16"), ("float32", "f32")]
)
def test_sharded_and_typed_experts_equal_the_single_file(
    dtype: str, outtype: str, converted, tmp_path: Path
) -> None:
    """Experts stacked from three shards of BF16/F16/F32 weights give exactly the tensors
    the single F32 file gives at that output type: rounding f32 -> bf16/f16 once, in the
    checkpoint or in the converter, is the same rounding. Tensors kept in F32 (norms,
    router) hold the checkpoint's rounded values exactly."""
    src = tiny("tiny-qwen3moe")
    copy = _reshard(src, tmp_path / "model", dtype, 3)
    out = tmp_path / "out.gguf"
    convert_hf_dir(copy, out, outtype)
    ours, single = _tensors(out), _tensors(converted(src, outtype))
    assert ours.keys() == single.keys()
    for name, (kind, shape, data) in ours.items():
        want_kind, want_shape, want = single[name]
        assert (kind, shape) == (want_kind, want_shape), name
        if kind == 0 and dtype != "float32":  # F32 output of a rounded checkpoint
            want = _rounded(np.frombuffer(want, np.float32), dtype).tobytes()
        assert data == want, name
    assert ours["blk.0.ffn_gate_exps.weight"][1] == (64, 32, 4)  # ggml order: in, out, expert


def _rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    bits = quantize_bf16(x).view("<u2").reshape(x.shape).astype(np.uint32) << 16
    return bits.view(np.float32)


def test_tied_head_is_written_where_llama_cpp_needs_it(converted) -> None:
    tensors = _tensors(converted(tiny("tiny-qwen2moe"), "f32"))
    assert tensors["output.weight"] == tensors["token_embd.weight"]
    assert "output.weight" not in _tensors(converted(tiny("tiny-qwen3moe"), "f32"))


def test_missing_expert_is_named(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    copy = Path(shutil.copytree(tiny("tiny-mixtral"), tmp_path / "model"))
    tensors = load_file(str(copy / "model.safetensors"))
    del tensors["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(
        ConvertError,
        match=r"blk\.1\.ffn_up_exps\.weight: no tensor for "
        r"expert 2",
    ):
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")


def test_blocks_past_the_config_are_left_out(converted, tmp_path: Path) -> None:
    """GLM-4.5 stores its multi-token-prediction layer as block num_hidden_layers."""
    from safetensors.numpy import load_file, save_file

    src = tiny("tiny-glm4moe")
    copy = Path(shutil.copytree(src, tmp_path / "model"))
    tensors = load_file(str(copy / "model.safetensors"))
    extra = {
        n.replace("layers.1.", "layers.2."): v
        for n, v in tensors.items()
        if n.startswith("model.layers.1.")
    }
    extra["model.layers.2.eh_proj.weight"] = np.zeros((64, 128), np.float32)
    save_file({**tensors, **extra}, str(copy / "model.safetensors"))
    config = json.loads((copy / "config.json").read_text())
    config["num_nextn_predict_layers"] = 1
    (copy / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out.gguf"
    convert_hf_dir(copy, out, "f32")
    assert _tensors(out) == _tensors(converted(src, "f32"))
    assert GGUFReader(out).fields["glm4moe.nextn_predict_layers"].contents() == 0


def test_fused_experts_in_either_layout_convert_alike(converted, tmp_path: Path) -> None:
    """Qwen3-VL MoE's fused experts as released ([experts, in, out], the fixture) and as
    transformers 5 saves them ([experts, out, in]) give the same GGUF; a shape that fits
    neither is named."""
    from safetensors.numpy import load_file, save_file

    from fixtures.tiny_multimodal import transpose_fused_experts

    src = tiny("tiny-qwen3-vl-moe")
    copy = Path(shutil.copytree(src, tmp_path / "model"))
    transpose_fused_experts(copy)
    out = tmp_path / "out.gguf"
    convert_hf_dir(copy, out, "f32")
    ours = _tensors(out)
    assert ours == _tensors(converted(src, "f32"))
    assert ours["blk.0.ffn_gate_exps.weight"][1] == (64, 48, 4)  # ggml order: in, out, expert
    tensors = load_file(str(copy / "model.safetensors"))
    name = "model.language_model.layers.0.mlp.experts.down_proj"
    tensors[name] = np.zeros((4, 64, 40), np.float32)
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"fused experts of shape \[4, 64, 40\] fit neither"):
        convert_hf_dir(copy, out, "f32")


def _mfc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_list_architectures() -> None:
    run = _mfc("convert", "--list-architectures")
    assert run.returncode == 0, run.stderr
    listed = {line.split()[0] for line in run.stdout.splitlines()[1:]}
    assert listed == set(SUPPORTED)
    as_json = json.loads(_mfc("convert", "--list-architectures", "--json").stdout)
    rows = {row["hf"]: row["gguf"] for row in as_json["architectures"]}
    assert rows["MixtralForCausalLM"] == "llama" and rows["DeepseekV3ForCausalLM"] == "deepseek2"
    assert set(rows) == set(SUPPORTED)


def test_readme_table_lists_every_architecture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| Family | Hugging Face architecture") :]
    table = table[: table.index("\n\n")]
    for name in SUPPORTED:
        assert f"`{name}`" in table, name


def test_unsupported_architecture_says_what_is_missing(tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny("tiny-olmo2"), tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    config["architectures"] = ["MllamaForConditionalGeneration"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert "unsupported architecture 'MllamaForConditionalGeneration'" in info.value.message
    assert "no conversion entry" in info.value.message
    assert "has no mllama architecture" in info.value.message
    assert info.value.hint and "--list-architectures" in info.value.hint


def test_mistral4_is_refused_by_name(tmp_path: Path) -> None:
    """Mistral 4 shares Mistral 3's Hugging Face name but not its layers."""
    copy = Path(shutil.copytree(tiny("tiny-mistral3-vl"), tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["model_type"] = "mistral4"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert info.value.file == str(copy / "config.json")
    assert "Mistral 4 (text_config.model_type 'mistral4'" in info.value.message


#: the Hugging Face names Ollama's converter takes (convert/convert.go, LoadModelMetadata)
OLLAMA_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MllamaForConditionalGeneration",
    "Llama4ForConditionalGeneration",
    "Mistral3ForConditionalGeneration",
    "Ministral3ForCausalLM",
    "MixtralForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "Gemma3ForConditionalGeneration",
    "Gemma3TextModel",
    "Gemma3nForConditionalGeneration",
    "Gemma4ForCausalLM",
    "Gemma4ForConditionalGeneration",
    "Phi3ForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
    "Qwen3VLMoeForConditionalGeneration",
    "Olmo3ForCausalLM",
    "BertModel",
    "NomicBertModel",
    "NomicBertMoEModel",
    "CohereForCausalLM",
    "GptOssForCausalLM",
    "DeepseekOCRForCausalLM",
    "DeepseekV3ForCausalLM",
    "Glm4MoeLiteForCausalLM",
    "LagunaForCausalLM",
    "GlmOcrForConditionalGeneration",
    "Lfm2ForCausalLM",
    "Lfm2MoeForCausalLM",
    "Lfm2VlForConditionalGeneration",
    "Qwen3NextForCausalLM",
    "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration",
    "NemotronH_Nano_VL_V2",
    "NemotronH_Nano_Omni_Reasoning_V3",
    "NemotronHForCausalLM",
)


def test_every_reference_architecture_is_converted_or_refused_with_a_reason() -> None:
    """Each of Ollama's names converts, or has its reason, which the error and the
    README's table give (and nothing is both)."""
    from toolchain.convert.arch.not_supported import NOT_SUPPORTED

    assert not set(SUPPORTED) & set(NOT_SUPPORTED)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| Ollama's converter takes") :]
    table = table[: table.index("\n\n")]
    for name in OLLAMA_ARCHITECTURES:
        assert name in SUPPORTED or name in NOT_SUPPORTED, name
        row = next((line for line in table.splitlines() if f"`{name}`" in line), None)
        assert row is not None, name
        assert ("| yes |" in row) == (name in SUPPORTED), row


def test_mxfp4_blocks_elsewhere_are_refused_with_the_way_out(tmp_path: Path) -> None:
    """MXFP4 blocks + scales (uint8) convert as they are only for GPT-OSS."""
    from safetensors.numpy import load_file, save_file

    copy = Path(shutil.copytree(tiny("tiny-qwen3moe"), tmp_path / "model"))
    tensors = load_file(str(copy / "model.safetensors"))
    tensors.pop("model.layers.0.mlp.experts.0.down_proj.weight")
    tensors["model.layers.0.mlp.experts.0.down_proj_blocks"] = np.zeros((64, 1, 16), np.uint8)
    tensors["model.layers.0.mlp.experts.0.down_proj_scales"] = np.full((64, 1), 127, np.uint8)
    save_file(tensors, str(copy / "model.safetensors"))
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert "MXFP4 blocks (Qwen3MoeForCausalLM's quantized experts)" in info.value.message
    assert info.value.hint and "dequantize" in info.value.hint
