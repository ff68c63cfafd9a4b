"""Laguna and GLM-OCR's language model (fixtures/tiny_laguna_glmocr.py), judged as
test_breadth.py judges the other families: llama.cpp on our F32 GGUF against
transformers (logits within 1e-3 relative at every position, same argmax, same greedy
16 tokens), token ids against the checkpoint's tokenizer, and llama.cpp's own converter
on the same directory (differences listed with their reasons).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.tiny_laguna_glmocr import BY_NAME
from tests.toolchain.convert.breadth import Family, tiny
from tests.toolchain.convert.reference_convert import fields

pytestmark = pytest.mark.oracle

_MTP = (
    "the multi-token-prediction block after the last layer (block 2, as GLM-OCR's 16) "
    "is left out, as for GLM-4 MoE: llama.cpp loads it but never runs it. The reference "
    "writes it and counts it in block_count with nextn_predict_layers 1; ours has "
    "num_hidden_layers blocks and nextn_predict_layers 0"
)
#: what differs from llama.cpp's converter output, and why (empty: nothing)
REFERENCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-laguna": {},
    "tiny-laguna-yarn": {},
    "tiny-laguna-per-element": {},
    "tiny-glm-ocr": {
        "glm4.block_count": _MTP,
        "glm4.nextn_predict_layers": _MTP,
        **{
            f"tensor blk.2.{name}.weight": _MTP
            for name in (
                *("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"),
                *("ffn_up", "ffn_down", "post_attention_norm", "post_ffw_norm"),
                *("nextn.eh_proj", "nextn.enorm", "nextn.hnorm", "nextn.shared_head_norm"),
            )
        },
    },
}


FAMILY = Family(tuple(BY_NAME), REFERENCE_DIFFERENCES)
test_logits_and_greedy_match_transformers = FAMILY.logits_test()
test_token_ids_match_transformers = FAMILY.token_ids_test()
test_same_gguf_as_llama_cpp_converter = FAMILY.reference_test()


def test_laguna_gguf_says_what_llama_cpp_reads(converted) -> None:
    got = fields(converted(tiny("tiny-laguna"), "f32"))
    assert got["general.architecture"] == "laguna"
    assert got["tokenizer.ggml.pre"] == "laguna"
    assert got["laguna.attention.head_count"] == [4, 8, 8, 8]
    assert got["laguna.leading_dense_block_count"] == 1
    assert got["laguna.expert_shared_feed_forward_length"] == 48
    assert got["laguna.rope.dimension_count"] == 8  # half of head_dim 16 on full layers
    assert got["laguna.rope.dimension_count_swa"] == 16
    assert got["laguna.rope.freq_base_swa"] == 10000.0
    # the released layout (full every 4th from 0) is llama.cpp's default: no pattern key
    assert "laguna.attention.sliding_window_pattern" not in got
    end_of_turn = got["tokenizer.ggml.tokens"].index("</assistant>")
    assert got["tokenizer.ggml.eot_token_id"] == end_of_turn
    assert got["tokenizer.ggml.token_type"][end_of_turn] == 3  # CONTROL, though unflagged


def _laguna_with(tmp_path: Path, **changes: object) -> Path:
    copy = Path(shutil.copytree(tiny("tiny-laguna"), tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    return copy


def test_laguna_other_window_layouts_are_written_per_layer(tmp_path: Path) -> None:
    from toolchain.convert import convert_hf_dir

    kinds = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
    out = tmp_path / "out.gguf"
    convert_hf_dir(_laguna_with(tmp_path, layer_types=kinds), out, "f32")
    assert fields(out)["laguna.attention.sliding_window_pattern"] == [True, False, True, False]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"moe_router_logit_softcapping": 30.0}, "no router soft-capping"),
        ({"moe_apply_router_weight_on_input": True}, "weights the experts' outputs"),
        (
            {"mlp_layer_types": ["dense", "sparse", "dense", "sparse"]},
            "dense blocks only before the first sparse one",
        ),
    ],
)
def test_laguna_what_llama_cpp_cannot_run_is_refused(
    changes: dict[str, object], message: str, tmp_path: Path
) -> None:
    from toolchain.convert import ConvertError, convert_hf_dir

    with pytest.raises(ConvertError) as info:
        convert_hf_dir(_laguna_with(tmp_path, **changes), tmp_path / "out.gguf", "f32")
    assert message in info.value.message
    assert not (tmp_path / "out.gguf").exists()


def test_glm_ocr_gguf_is_its_language_model(converted) -> None:
    from gguf import GGUFReader

    path = converted(tiny("tiny-glm-ocr"), "f32")
    got = fields(path)
    assert got["general.architecture"] == "glm4"
    assert got["glm4.block_count"] == 2  # the MTP block after them is left out
    assert got["glm4.attention.key_length"] == 32  # head_dim, not hidden / heads
    assert got["glm4.rope.dimension_count"] == 16
    assert got["glm4.rope.dimension_sections"] == [4, 2, 2, 0]
    tokens = got["tokenizer.ggml.tokens"]
    assert got["tokenizer.ggml.eot_token_id"] == tokens.index("<|user|>")
    assert got["tokenizer.ggml.bos_token_id"] == tokens.index("<|endoftext|>")
    names = {t.name for t in GGUFReader(path).tensors}
    assert not any(name.startswith("blk.2.") or "visual" in name for name in names)
    assert "blk.0.post_ffw_norm.weight" in names and "blk.0.ffn_gate.weight" not in names
