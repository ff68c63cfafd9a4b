"""NomicBERT MoE (nomic-embed-text-v2-moe) converted at F32 and run by llama.cpp as an
embedding model, against a reference forward pass over the checkpoint's own weights.

transformers (5.x) has NomicBertModel but not its MoE variant, which only exists as
nomic's remote code on top of megablocks (a CUDA library). The reference here is that
model written out in torch (float64) from nomic's definition (contrastors'
NomicBertEncoder and megablocks' dMoE): post-norm blocks, fused QKV with NEOX RoPE,
exact-erf GELU feed-forwards, and in every `moe_every_n_layers`-th block (i % n == 1)
softmax top-k routing over un-gated GELU experts, weights not renormalized, plus the
experts' shared output bias (zero in the fixture, as megablocks initializes it; llama.cpp
has no place for it, see toolchain/convert/arch/nomic_bert.py).

- Hidden states: max |Δ| / max |h| <= 1e-3 (measured 5.2e-4..8.2e-4: llama.cpp's GELU
  goes through a half-precision table, as for XLM-R; rounding the reference's GELU input
  and output to half precision brings it to <= 2.3e-4). Routing every token to its top
  expert only instead of two puts it at 0.16..0.60, so the experts are checked.
- Mean-pooled embedding (the sentence-transformers pooling): cosine >= 0.9999
  (measured 1 - 5e-8).
- The routing matters: every expert is picked for some token, and the test texts' tokens
  do not all pick the same pair.
- Token ids: llama.cpp's UGM tokenizer against transformers' on the shared texts.
- llama.cpp's own converter cannot convert this model (nor any XLM-R-vocabulary
  nomic-bert-moe smaller than the real one): its vocabulary code writes `<mask>` at the
  real model's id 250001 (test_reference_converter_cannot_convert_it pins that). On a
  copy with a WordPiece vocabulary it converts: every tensor is byte-identical to ours;
  its architecture metadata is wrong there, because under transformers 5 it reads
  nomic's config.json through transformers' NomicBertConfig, whose keys differ
  (n_embd -> hidden_size), and writes that class's defaults (listed below).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fixtures.generate_tiny_models import build_in_place
from fixtures.tiny_nomic_moe import nomic_bert_moe
from tests.conftest import MODELS
from tests.toolchain.convert.breadth import assert_tokenizes_like_transformers
from tests.toolchain.convert.oracle import relative_error
from tests.toolchain.convert.reference_convert import differences, run_reference
from tests.toolchain.convert.test_breadth_encoders import SENTENCES, TOLERANCE, embedders

pytestmark = pytest.mark.oracle


def tiny() -> Path:
    return build_in_place(MODELS / "tiny-nomic-bert-moe", nomic_bert_moe)


class NomicMoE:
    """nomic-embed-text-v2-moe's forward pass in float64 torch, from its safetensors."""

    def __init__(self, src: Path) -> None:
        import torch
        from safetensors.torch import load_file

        self.c = json.loads((src / "config.json").read_text())
        self.w = {
            k: v.to(torch.float64) for k, v in load_file(str(src / "model.safetensors")).items()
        }
        self.experts_used: set[int] = set()
        self.pairs: set[tuple[int, ...]] = set()

    def _norm(self, x: Any, name: str) -> Any:
        import torch

        return torch.nn.functional.layer_norm(
            x,
            x.shape[-1:],
            self.w[name + ".weight"],
            self.w[name + ".bias"],
            self.c["layer_norm_epsilon"],
        )

    def _linear(self, x: Any, name: str) -> Any:
        bias = self.w.get(name + ".bias")
        y = x @ self.w[name + ".weight"].T
        return y if bias is None else y + bias

    def _attention(self, x: Any, p: str) -> Any:
        import torch

        n, d, heads = x.shape[0], self.c["n_embd"], self.c["n_head"]
        hd = d // heads
        q, k, v = self._linear(x, p + "attn.Wqkv").view(n, 3, heads, hd).unbind(1)
        inv = 1.0 / self.c["rotary_emb_base"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        angles = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

        def rope(t: Any) -> Any:  # NEOX: the two halves of each head rotate together
            a, b = t[..., : hd // 2], t[..., hd // 2 :]
            return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

        q, k = rope(q), rope(k)
        scores = torch.einsum("qhd,khd->hqk", q, k) / hd**0.5
        out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(n, d)
        return self._linear(out, p + "attn.out_proj")

    def _moe(self, x: Any, p: str) -> Any:
        import torch

        gelu = torch.nn.functional.gelu
        n_exp, top_k = self.c["num_experts"], self.c["moe_top_k"]
        probs = (x @ self.w[p + "mlp.router.layer.weight"].T).softmax(-1)
        weights, chosen = probs.topk(top_k, dim=-1)
        w1 = self.w[p + "mlp.experts.mlp.w1"].view(n_exp, -1, x.shape[-1])
        w2 = self.w[p + "mlp.experts.mlp.w2"].view(n_exp, -1, x.shape[-1])
        out = torch.zeros_like(x)
        for t in range(x.shape[0]):
            self.pairs.add(tuple(sorted(chosen[t].tolist())))
            for wt, e in zip(weights[t], chosen[t].tolist(), strict=True):
                self.experts_used.add(e)
                out[t] += wt * (gelu(w1[e] @ x[t]) @ w2[e])
        return out + self.w[p + "mlp.experts.bias"]

    def __call__(self, ids: list[int]) -> np.ndarray:
        import torch

        gelu = torch.nn.functional.gelu
        x = (
            self.w["embeddings.word_embeddings.weight"][ids]
            + self.w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "emb_ln")
        for i in range(self.c["n_layer"]):
            p = f"encoder.layers.{i}."
            x = self._norm(x + self._attention(x, p), p + "norm1")
            if i % self.c["moe_every_n_layers"] == 1:
                y = self._moe(x, p)
            else:
                y = self._linear(gelu(self._linear(x, p + "mlp.fc1")), p + "mlp.fc2")
            x = self._norm(x + y, p + "norm2")
        return x.numpy()


def test_embeddings_match_reference_forward(converted) -> None:
    from transformers import AutoTokenizer

    src = tiny()
    ref_model = NomicMoE(src)
    tok = AutoTokenizer.from_pretrained(str(src))
    with embedders(converted(src, "f32")) as (tokens, pooled):  # pooled: mean, from the file
        for text in SENTENCES:
            ids = tok(text)["input_ids"]
            assert tokens.tokenize(text.encode(), add_bos=True, special=True) == ids
            ref = ref_model(ids)
            ours = np.array(tokens.embed(text), dtype=np.float32)
            assert ours.shape == ref.shape
            assert relative_error(ours, ref.astype(np.float32)) <= TOLERANCE, text
            got = np.array(pooled.embed(text, normalize=False), dtype=np.float64)
            mean = ref.mean(axis=0)
            cosine = float(got @ mean / np.linalg.norm(got) / np.linalg.norm(mean))
            assert cosine >= 0.9999, text
    assert ref_model.experts_used == set(range(ref_model.c["num_experts"]))
    assert len(ref_model.pairs) > 1


def test_gguf_says_nomic_bert_moe(converted) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(converted(tiny(), "f32"))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == "nomic-bert-moe"
    assert fields["nomic-bert-moe.moe_every_n_layers"] == 2
    assert fields["nomic-bert-moe.expert_count"] == 4
    assert fields["nomic-bert-moe.expert_used_count"] == 2
    # nomic-embed-text-v2-moe's n_positions / max_trained_positions 2048/2048: trained on 512
    assert fields["nomic-bert-moe.context_length"] == 512
    assert fields["nomic-bert-moe.pooling_type"] == 1  # mean
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    assert shapes["blk.1.ffn_up_exps.weight"] == (64, 128, 4)  # ggml order: in, out, expert
    assert shapes["blk.1.ffn_down_exps.weight"] == (128, 64, 4)
    assert shapes["blk.1.ffn_gate_inp.weight"] == (64, 4)
    assert "blk.0.ffn_up.weight" in shapes and "blk.1.ffn_up.weight" not in shapes


def test_token_ids_match_transformers(converted) -> None:
    src = tiny()
    assert_tokenizes_like_transformers(src, converted(src, "f32"))


_CONFIG_DEFAULTS = (
    "the reference reads config.json through transformers' own NomicBertConfig "
    "(model_type nomic_bert, keys hidden_size etc.), so nomic's n_embd-style "
    "keys go unread and that class's defaults (bert-base sizes, eps 1e-12, "
    "theta 1000, 2048 positions) are written"
)
_WORDPIECE = (
    "WordPiece keys as mfc writes them for every BERT-family model (Ollama's "
    "converter, pinned by test_minilm's conformance recording)"
)
#: what differs from llama.cpp's converter on the WordPiece copy, and why
REFERENCE_DIFFERENCES = {
    **{
        f"nomic-bert-moe.{key}": _CONFIG_DEFAULTS
        for key in (
            "attention.head_count",
            "attention.key_length",
            "attention.value_length",
            "attention.layer_norm_epsilon",
            "block_count",
            "context_length",
            "embedding_length",
            "feed_forward_length",
            "rope.freq_base",
        )
    },
    **{
        f"tokenizer.ggml.{key}": _WORDPIECE
        for key in (
            "add_bos_token",
            "add_eos_token",
            "add_sep_token",
            "cls_token_id",
            "eos_token_id",
            "normalizer.lowercase",
            "pre",
            "scores",
        )
    },
}


@pytest.mark.slow
def test_same_tensors_as_llama_cpp_converter(converted, tmp_path: Path) -> None:
    """On a copy with a WordPiece vocabulary (which the reference can convert), every
    tensor is byte-identical, the expert stacks included; metadata differs as listed."""
    import shutil

    from fixtures.tiny_tokenizers import save_wordpiece

    copy = Path(shutil.copytree(tiny(), tmp_path / "wpm"))
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "sentencepiece.bpe.model",
        "special_tokens_map.json",
    ):
        (copy / name).unlink(missing_ok=True)
    save_wordpiece(copy, vocab_size=json.loads((copy / "config.json").read_text())["vocab_size"])
    found = differences(
        converted(copy, "f32"), run_reference(copy, tmp_path / "reference.gguf", "f32", "default")
    )
    assert not [d for d in found if d.startswith("tensor ")], found
    keys = {d.split(":")[0] for d in found}
    assert keys == set(REFERENCE_DIFFERENCES), keys ^ set(REFERENCE_DIFFERENCES)


@pytest.mark.slow
def test_reference_converter_cannot_convert_it(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"tokens\[250001\] = b'<mask>'"):
        run_reference(tiny(), tmp_path / "reference.gguf", "f32", None)


def test_moe_key_selects_the_variant() -> None:
    from toolchain.convert.arch import architecture_for

    config = Path("config.json")
    assert architecture_for("NomicBertModel", config, {}).gguf_arch == "nomic-bert"
    assert (
        architecture_for("NomicBertModel", config, {"moe_every_n_layers": 0}).gguf_arch
        == "nomic-bert"
    )
    assert (
        architecture_for("NomicBertModel", config, {"moe_every_n_layers": 2}).gguf_arch
        == "nomic-bert-moe"
    )


def test_list_architectures_names_the_selecting_key() -> None:
    from tests.toolchain.convert.test_breadth_inputs import _mfc

    rows = json.loads(_mfc("convert", "--list-architectures", "--json").stdout)
    nomic = {
        r["gguf"]: r["selected_by"] for r in rows["architectures"] if r["hf"] == "NomicBertModel"
    }
    assert nomic == {"nomic-bert": None, "nomic-bert-moe": "moe_every_n_layers"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("moe_normalize_expert_weights", True),
        ("activation_function", "swiglu"),
        ("num_shared_experts", 1),
    ],
)
def test_what_llama_cpp_cannot_run_is_refused(key: str, value: object, tmp_path: Path) -> None:
    import shutil

    from toolchain.convert import ConvertError, convert_hf_dir

    copy = Path(shutil.copytree(tiny(), tmp_path / "model"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ConvertError) as info:
        convert_hf_dir(copy, tmp_path / "out.gguf", "f32")
    assert f"{key} = {value!r}" in info.value.message
    assert "nomic-bert-moe supports only" in info.value.message
    assert not (tmp_path / "out.gguf").exists()
