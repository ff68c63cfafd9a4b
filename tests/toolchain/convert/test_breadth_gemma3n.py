"""Gemma 3n's language model (fixtures/tiny_gemma3n.py: per-layer embeddings, AltUp, LAuReL,
activation sparsity, KV sharing, sliding layers) converted by mfc at F32 and judged like
the other families in test_breadth.py.

The bundled llama.cpp computes two things differently from transformers (and from the
original JAX model), whatever the GGUF says:
- the activation-sparsity cutoff (mean + z * std over the gate's width) uses the
  sample standard deviation (divides by n - 1), transformers the population one (n);
- GELU on the CPU is a table lookup at F16 precision (input and output rounded).
On this tiny model (512-wide gate, 22 layers) that moves the logits by 4.5e-3..7e-3
relative (the first at 1/n, so negligible at the released 8192-16384 width). With both
conventions applied to transformers too the two agree within the breadth tolerance
(measured 4.8e-4..7.5e-4), which is what checks the conversion itself; against
transformers as it is, the argmax and the greedy continuation are identical and the
error stays under ENGINE_TOLERANCE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.generate_tiny_models import build_in_place
from fixtures.tiny_gemma3n import NAME, build, text_model
from tests.conftest import MODELS
from tests.toolchain.convert import oracle
from tests.toolchain.convert.breadth import (
    FLAGS,
    GREEDY_TOKENS,
    PROMPTS,
    SPM_MASK,
    TOLERANCE,
    assert_same_as_reference,
    assert_tokenizes_like_transformers,
)

pytestmark = pytest.mark.oracle

#: against unmodified transformers (see the module docstring; measured 4.5e-3..7e-3)
ENGINE_TOLERANCE = 1e-2

#: what differs from llama.cpp's converter output, and why: the tokenizer flags and
#: added-token typing every Gemma shares (see test_breadth.py); nothing of the model
REFERENCE_DIFFERENCES = {**FLAGS, **SPM_MASK}


@pytest.fixture(scope="module")
def tiny() -> Path:
    return build_in_place(MODELS / NAME, build)


@pytest.fixture(scope="module")
def llm(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from toolchain.convert.convert import convert_hf_dir

    out = tmp_path_factory.mktemp("gemma3n") / "model.gguf"
    convert_hf_dir(tiny, out, "f32")
    model = oracle.load_llama(out, logits_all=True)
    yield model
    model.close()


def _llama_cpp_numerics(model: Any) -> Any:
    """`model` computing the sparsity cutoff and GELU the way llama.cpp's CPU backend does."""
    import torch
    from torch import nn

    class TableGelu(nn.Module):
        """ggml's GELU: tanh approximation looked up at F16 input, F16 output, passed
        through beyond +-10."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.gelu(x.half().float(), approximate="tanh").half().float()
            return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, y))

    def sample_std_topk(self: Any, x: torch.Tensor) -> torch.Tensor:
        z = torch.distributions.normal.Normal(0, 1).icdf(torch.tensor(self.activation_sparsity))
        cutoff = x.mean(-1, keepdim=True) + x.std(-1, keepdim=True, unbiased=True) * z
        return nn.functional.relu(x - cutoff)

    for module in model.modules():
        if hasattr(module, "act_fn"):
            module.act_fn = TableGelu()
        if hasattr(module, "_gaussian_topk"):
            module._gaussian_topk = sample_std_topk.__get__(module)
    return model


@pytest.mark.parametrize("numerics", ["llama.cpp", "transformers"])
def test_logits_and_greedy_match_transformers(tiny: Path, llm: Any, numerics: str) -> None:
    from transformers import AutoTokenizer

    model = text_model(tiny)
    if numerics == "llama.cpp":
        model = _llama_cpp_numerics(model)
    tolerance = TOLERANCE if numerics == "llama.cpp" else ENGINE_TOLERANCE
    tok = AutoTokenizer.from_pretrained(str(tiny))
    oracle.check_prompts(llm, model, tok, PROMPTS, tolerance, GREEDY_TOKENS)


def test_plain_transformers_differs_as_explained(tiny: Path, llm: Any) -> None:
    """The two conventions are what separates llama.cpp from transformers here: without
    them the error is several times the breadth tolerance (so the check above with them
    is not vacuous)."""
    from transformers import AutoTokenizer

    model = text_model(tiny)
    ids = AutoTokenizer.from_pretrained(str(tiny))(PROMPTS[0])["input_ids"]
    assert (
        oracle.relative_error(oracle.llama_logits(llm, ids), oracle.hf_logits(model, ids))
        > 3 * TOLERANCE
    )


def test_token_ids_match_transformers(tiny: Path, converted) -> None:
    assert_tokenizes_like_transformers(tiny, converted(tiny, "f32"))


@pytest.mark.slow
def test_same_gguf_as_llama_cpp_converter(tiny: Path, converted, tmp_path: Path) -> None:
    assert_same_as_reference(tiny, converted(tiny, "f32"), tmp_path, REFERENCE_DIFFERENCES)


def test_shared_layers_without_kv_weights_are_refused(tiny: Path, tmp_path: Path) -> None:
    """A checkpoint saved by transformers 5 has no K/V projections in the KV-sharing
    layers; llama.cpp needs them (unused) in every layer, so the conversion stops and
    names the first one missing."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from toolchain.convert.convert import convert_hf_dir
    from toolchain.convert.errors import ConvertError

    src = tmp_path / "src"
    shutil.copytree(tiny, src)
    tensors = load_file(str(src / "model.safetensors"))
    shared = "model.language_model.layers.21.self_attn."
    kept = {k: v for k, v in tensors.items() if not k.startswith((shared + "k_", shared + "v_"))}
    save_file(kept, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConvertError, match=r"no tensor for blk\.21\.attn_k"):
        convert_hf_dir(src, tmp_path / "out.gguf", "f32")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"laurel_rank": 32},
            "laurel_rank is 32: the bundled llama.cpp runs Gemma 3n only with 64",
        ),
        ({"hidden_size_per_layer_input": 128}, "hidden_size_per_layer_input is 128"),
        ({"activation_sparsity_pattern": [0.95] * 9 + [0.0] * 13}, "activation_sparsity_pattern"),
        ({"num_kv_shared_layers": 3}, "KV sharing from layer 19 of 22"),
        ({"layer_types": ["sliding_attention"] * 22}, "KV sharing from layer 20 of 22"),
    ],
)
def test_settings_llama_cpp_would_ignore_are_refused(
    tiny: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """The bundled llama.cpp fixes these at the released models' values: a checkpoint that
    says otherwise would not load or would silently run a different model."""
    import json

    from toolchain.convert.convert import convert_hf_dir
    from toolchain.convert.errors import ConvertError

    src = tmp_path / "src"
    src.mkdir()
    for item in tiny.iterdir():
        (src / item.name).symlink_to(item)
    (src / "config.json").unlink()
    config = json.loads((tiny / "config.json").read_text())
    config["text_config"].update(change)
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match=message):
        convert_hf_dir(src, tmp_path / "out.gguf", "f32")
