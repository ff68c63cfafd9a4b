"""Qwen's gated delta-net hybrids (fixtures/tiny_qwen_next.py) converted by mfc at F32 and
judged like the other breadth models (see test_breadth.py): logits and greedy tokens from
llama.cpp against transformers, token ids, and llama.cpp's own converter's output.

llama.cpp's converter is run with --no-mtp: without it, it requires a multi-token-
prediction block (`mtp.*`), which released checkpoints carry and transformers' classes do
not (they drop it on load, so a tiny model saved by transformers has none). mfc leaves
that block out, as --no-mtp does; test_mtp_block_is_left_out checks it on a copy that has
one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.tiny_qwen_next import BY_NAME
from tests.toolchain.convert.breadth import Family, tiny
from tests.toolchain.convert.reference_convert import tensors
from toolchain.convert import convert_hf_dir
from toolchain.convert.errors import ConvertError

pytestmark = pytest.mark.oracle

#: what differs from llama.cpp's converter output, and why (empty: nothing)
REFERENCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-qwen3-next": {},
    "tiny-qwen35": {},
    "tiny-qwen35-moe": {},
    "tiny-qwen35-text": {},
    "tiny-qwen35-moe-text": {},
}


FAMILY = Family(tuple(BY_NAME), REFERENCE_DIFFERENCES, flags=dict.fromkeys(BY_NAME, ("--no-mtp",)))
test_logits_and_greedy_match_transformers = FAMILY.logits_test()
test_token_ids_match_transformers = FAMILY.token_ids_test()
test_same_gguf_as_llama_cpp_converter = FAMILY.reference_test()


@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("name", list(BY_NAME))
def test_quantizes_like_llama_quantize(name: str, ftype: str, converted, tmp_path: Path) -> None:
    """`mfc quantize` of the converted F32 file writes llama-quantize's bytes: its types for
    the delta-net tensors (the convolution kept F32), every expert of the stacked ones."""
    import quant
    from fixtures.quant_reference import reference, sha256_file

    src = converted(tiny(name), "f32")
    ref = reference(src, ftype)
    out = tmp_path / "out.gguf"
    quant.quantize_file(src, out, ftype, threads=2)
    assert ref.ok and sha256_file(out) == ref.sha256


def _copy(src: Path, dest: Path, **config: object) -> Path:
    shutil.copytree(src, dest)
    path = dest / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}, indent=2))
    return dest


def test_mtp_block_is_left_out(converted, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    src = tiny("tiny-qwen3-next")
    copy = _copy(src, tmp_path / "with-mtp")
    extra = {
        "mtp.fc.weight": np.ones((64, 128), np.float32),
        "mtp.layers.0.input_layernorm.weight": np.ones(64, np.float32),
        "mtp.norm.weight": np.ones(64, np.float32),
    }
    save_file(extra, str(copy / "model-mtp.safetensors"))
    out = tmp_path / "out.gguf"
    convert_hf_dir(copy, out, "f32")
    assert tensors(out) == tensors(converted(src, "f32"))


def _fuse_experts(path: Path) -> None:
    """Per-expert tensors -> transformers 5's fused ones: gate_up_proj [experts, 2 * ff,
    embd] (gate then up), down_proj [experts, embd, ff]."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(path))
    layers = sorted({k.split(".experts.")[0] for k in weights if ".experts." in k})
    for layer in layers:
        experts = range(sum(k.startswith(f"{layer}.experts.") for k in weights) // 3)
        gate, up, down = (
            np.stack([weights.pop(f"{layer}.experts.{x}.{kind}_proj.weight") for x in experts])
            for kind in ("gate", "up", "down")
        )
        weights[f"{layer}.experts.gate_up_proj"] = np.concatenate([gate, up], axis=1)
        weights[f"{layer}.experts.down_proj"] = down
    save_file(weights, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("name", ["tiny-qwen3-next", "tiny-qwen35-moe"])
def test_fused_experts_convert_like_per_expert_ones(name: str, converted, tmp_path: Path) -> None:
    src = tiny(name)
    copy = _copy(src, tmp_path / "fused")
    _fuse_experts(copy / "model.safetensors")
    out = tmp_path / "out.gguf"
    convert_hf_dir(copy, out, "f32")
    assert tensors(out) == tensors(converted(src, "f32"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mlp_only_layers": [1]}, "runs every block's feed-forward as mixture-of-experts"),
        ({"decoder_sparse_step": 2}, "runs every block's feed-forward as mixture-of-experts"),
        ({"linear_value_head_dim": 32}, "takes one head width for both"),
        ({"layer_types": ["full_attention"] * 3}, "layer_types has 3 entries for 4 layers"),
    ],
)
def test_refuses_what_llama_cpp_cannot_run(
    config: dict[str, object], message: str, tmp_path: Path
) -> None:
    copy = _copy(tiny("tiny-qwen3-next"), tmp_path / "bad", **config)
    with pytest.raises(ConvertError, match=message):
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert not (tmp_path / "out.gguf").exists()
