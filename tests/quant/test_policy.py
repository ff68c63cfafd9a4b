"""The per-tensor type policy (llama.cpp's `llama_tensor_get_type`) on its own: the whole-file
tests compare its results on llama models; these pin the rules the spec spells out."""

from __future__ import annotations

import pytest

import quant
from quant.filetypes import file_type
from quant.formats import BY_ID
from quant.gguf_read import TensorInfo
from quant.policy import ModelFacts, plan_tensors, sort_key, use_more_bits


@pytest.mark.parametrize(
    ("n", "layers"),
    [
        (2, {1}),
        (4, {2, 3}),
        (6, {2, 5}),
        (8, {0, 3, 6, 7}),
        (32, {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}),
    ],
)
def test_use_more_bits(n: int, layers: set[int]) -> None:
    assert {i for i in range(n) if use_more_bits(i, n)} == layers


def test_tensor_order_is_llamas() -> None:
    names = [
        "blk.10.attn_q.weight",
        "token_embd.weight",
        "blk.2.ffn_up.weight",
        "output.weight",
        "blk.2.attn_k.weight",
        "output_norm.weight",
        "rope_freqs.weight",
    ]
    assert sorted(names, key=sort_key) == [
        "output.weight",
        "output_norm.weight",
        "rope_freqs.weight",
        "token_embd.weight",
        "blk.2.attn_k.weight",
        "blk.2.ffn_up.weight",
        "blk.10.attn_q.weight",
    ]


def test_file_type_names() -> None:
    assert file_type("q4_k_m").id == 15
    assert file_type("Q4_K").name == "Q4_K_M"  # llama-quantize's aliases
    assert file_type("q3_k").name == "Q3_K_M"
    assert file_type("7").name == "Q8_0"
    assert file_type("bf16").id == 32
    assert len(quant.FTYPE_NAMES) == 30
    assert file_type("iq2_m").id == 29 and file_type("29").default == "IQ2_S"
    # llama_ftype: LLAMA_FTYPE_MOSTLY_IQ2_XXS 19, IQ2_XS 20, IQ3_XS 22, IQ3_XXS 23, IQ2_S 28
    assert [file_type(n).id for n in ("iq2_xxs", "iq2_xs", "iq3_xs", "iq3_xxs", "iq2_s")] == [
        19,
        20,
        22,
        23,
        28,
    ]
    assert file_type("iq2_s").default == "IQ2_XS" and file_type("iq3_xs").default == "IQ3_S"
    assert file_type("iq4_xs").id == 30 and file_type("25").name == "IQ4_NL"
    with pytest.raises(quant.QuantError, match="unknown quantization type 'q9'") as info:
        file_type("q9")
    assert info.value.hint is not None and "Q4_K_M" in info.value.hint


def _bert(n_layer: int = 6) -> list[TensorInfo]:
    """all-MiniLM-L6-v2's tensors (n_embd 384, n_ff 1536, no output.weight)."""
    shapes = {
        "token_embd.weight": (384, 30522),
        "position_embd.weight": (384, 512),
        "token_types.weight": (384, 2),
        "token_embd_norm.weight": (384,),
    }
    for i in range(n_layer):
        b = f"blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            shapes[b + t + ".weight"] = (384, 384)
            shapes[b + t + ".bias"] = (384,)
        shapes[b + "ffn_up.weight"] = (384, 1536)
        shapes[b + "ffn_down.weight"] = (1536, 384)
        shapes[b + "attn_output_norm.weight"] = (384,)
    return [TensorInfo(name, ne, 0, 0, i) for i, (name, ne) in enumerate(shapes.items())]


def test_minilm_q4_k_m_mix() -> None:
    """The spec's worked example: rows of 384 do not divide into 256-blocks."""
    facts = ModelFacts("bert", 6, 12, 12)
    types = {
        p.tensor.name: BY_ID[p.target].name
        for p in plan_tensors(_bert(), facts, file_type("Q4_K_M"))
    }
    assert types["token_embd.weight"] == "Q8_0"
    assert types["position_embd.weight"] == types["token_types.weight"] == "F32"
    assert types["token_embd_norm.weight"] == types["blk.0.attn_q.bias"] == "F32"
    for i in range(6):
        b = f"blk.{i}."
        assert types[b + "attn_q.weight"] == types[b + "attn_k.weight"] == "Q5_0"
        assert types[b + "attn_output.weight"] == types[b + "ffn_up.weight"] == "Q5_0"
        assert types[b + "attn_v.weight"] == ("Q8_0" if i in (2, 5) else "Q5_0")
        assert types[b + "ffn_down.weight"] == ("Q6_K" if i in (2, 5) else "Q4_K")


def test_q2_k_s_needs_an_imatrix_except_for_embeddings() -> None:
    plans = plan_tensors(_bert(2), ModelFacts("bert", 2, 12, 12), file_type("Q2_K_S"))
    # only ffn_down has rows (1536) that divide into 256-blocks; the others fall back to
    # Q4_0 and token_embd (tied) becomes Q8_0: none of those need the imatrix
    needs = {p.tensor.name for p in plans if p.requires_imatrix}
    assert needs == {"blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}
