"""Nemotron-H (Mamba-2 / attention / MLP or MoE hybrids) converted by mfc, judged like
the other breadth families (see test_breadth.py): llama.cpp running our F32 GGUF against
transformers running the checkpoint, llama.cpp's tokenizer against the checkpoint's, and
llama.cpp's own converter on the same directory.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.tiny_nemotronh import BY_NAME, KINDS, NEMOTRON_H, NEMOTRON_H_MOE, PATTERN
from tests.toolchain.convert.breadth import FLAGS, Family, tiny
from tests.toolchain.convert.oracle import load_llama
from tests.toolchain.convert.reference_convert import fields, run_reference, tensors
from toolchain.convert import convert_hf_dir
from toolchain.convert.errors import ConvertError

pytestmark = pytest.mark.oracle

#: what differs from llama.cpp's converter output, and why
REFERENCE_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-nemotron-h": FLAGS,
    "tiny-nemotron-h-moe": FLAGS,
}
FAMILY = Family(
    tuple(BY_NAME),
    REFERENCE_DIFFERENCES,
    # the reference reads config.json as written (not transformers' view of it) for the
    # dense model, see test_reference_misreads_transformers_view; the MoE one needs no help
    raw_config=frozenset({NEMOTRON_H.name}),
)
test_logits_and_greedy_match_transformers = FAMILY.logits_test()
test_token_ids_match_transformers = FAMILY.token_ids_test()
test_same_gguf_as_llama_cpp_converter = FAMILY.reference_test()


@pytest.mark.slow
def test_reference_misreads_transformers_view(converted, tmp_path: Path) -> None:
    """Why the comparison above bypasses AutoConfig: through transformers 5.25's config
    class (num_experts_per_tok defaults to 2, the pattern becomes a list whose "mlp" the
    reference does not count) llama.cpp's converter writes this dense model as
    nemotron_h_moe with every feed-forward width 0, which llama.cpp cannot load (it takes
    the MLP blocks for Mamba-2 ones). Ours loads; see the logits test."""
    src = tiny("tiny-nemotron-h")
    ours = converted(src, "f32")
    theirs = run_reference(
        src, tmp_path / "reference.gguf", "f32", fields(ours)["tokenizer.ggml.pre"]
    )
    got = fields(theirs)
    assert got["general.architecture"] == "nemotron_h_moe"
    assert got["nemotron_h_moe.feed_forward_length"] == [0] * 7
    assert tensors(theirs) == tensors(ours)  # the weights themselves are the same
    with pytest.raises(ValueError):
        load_llama(theirs)


def _variant(tmp_path: Path, edit, name: str = NEMOTRON_H.name) -> Path:
    """A copy of a tiny model with config.json edited."""
    src = tiny(name)
    dest = tmp_path / "variant"
    shutil.copytree(src, dest)
    config = json.loads((dest / "config.json").read_text())
    edit(config)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_transformers_saved_config_converts_the_same(converted, tmp_path: Path) -> None:
    """transformers 5's own form (layers_block_type list, no num_hidden_layers, MoE
    defaults present) gives the same file as the released form."""

    def as_saved(config: dict) -> None:
        config["layers_block_type"] = [KINDS[c] for c in config.pop("hybrid_override_pattern")]
        del config["num_hidden_layers"]
        config.update(num_experts_per_tok=2, n_routed_experts=8, moe_intermediate_size=32)

    out = tmp_path / "saved.gguf"
    convert_hf_dir(_variant(tmp_path, as_saved), out, "f32")
    assert fields(out) == fields(converted(tiny(NEMOTRON_H.name), "f32"))
    assert tensors(out) == tensors(converted(tiny(NEMOTRON_H.name), "f32"))
    assert len(PATTERN) == fields(out)["nemotron_h.block_count"]


def test_released_moe_config_converts_the_same(converted, tmp_path: Path) -> None:
    """Nemotron 3's config.json form (hybrid_override_pattern with E) selects the MoE
    entry as transformers' layers_block_type list does, and gives the same file."""

    def as_released(config: dict) -> None:
        by_kind = {kind: char for char, kind in KINDS.items()}
        kinds = config.pop("layers_block_type")
        config["hybrid_override_pattern"] = "".join(by_kind[k] for k in kinds)
        config["num_hidden_layers"] = len(kinds)

    out = tmp_path / "released.gguf"
    convert_hf_dir(_variant(tmp_path, as_released, NEMOTRON_H_MOE.name), out, "f32")
    ours = converted(tiny(NEMOTRON_H_MOE.name), "f32")
    assert fields(out)["general.architecture"] == "nemotron_h_moe"
    assert fields(out) == fields(ours)
    assert tensors(out) == tensors(ours)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda c: c.update(hybrid_override_pattern="M-E*-M-"),
            "block kinds ['-']",
        ),
        (lambda c: c.update(num_hidden_layers=6), "has 7 blocks, num_hidden_layers 6"),
        (lambda c: c.update(hybrid_override_pattern="M-M*-X-"), "block kinds ['X']"),
        (
            lambda c: c.update(mlp_hidden_act="gelu"),
            "mlp_hidden_act is 'gelu': llama.cpp runs Nemotron-H with relu2",
        ),
    ],
)
def test_bad_patterns_are_refused(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ConvertError, match=re.escape(message)):
        convert_hf_dir(_variant(tmp_path, edit), tmp_path / "out.gguf", "f32")


def test_mamba_parameters_take_llama_cpp_forms(converted) -> None:
    """A = -exp(A_log) and D as [heads, 1], conv1d without its unit axis, the gated norm
    per group: checked against the checkpoint's values directly."""
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    src = tiny(NEMOTRON_H.name)
    weights = load_file(str(src / "model.safetensors"))
    got = {t.name: np.asarray(t.data) for t in GGUFReader(converted(src, "f32")).tensors}
    base = "backbone.layers.0.mixer."
    np.testing.assert_allclose(
        got["blk.0.ssm_a"], -np.exp(weights[base + "A_log"])[:, None], rtol=1e-6
    )
    assert np.array_equal(got["blk.0.ssm_d"], weights[base + "D"][:, None])
    assert np.array_equal(got["blk.0.ssm_dt.bias"], weights[base + "dt_bias"])
    assert np.array_equal(got["blk.0.ssm_conv1d.weight"], weights[base + "conv1d.weight"][:, 0])
    assert np.array_equal(
        got["blk.0.ssm_norm.weight"], weights[base + "norm.weight"].reshape(2, 64)
    )


def test_moe_blocks_select_nemotron_h_moe() -> None:
    """The MoE entry is chosen by what the pattern holds, in either spelling, not by the
    MoE defaults transformers writes into every NemotronH config.json."""
    from tests.toolchain.convert.test_breadth_inputs import _mfc
    from toolchain.convert.arch import architecture_for

    path = Path("config.json")
    for config, gguf_arch in (
        ({"hybrid_override_pattern": "M-M*-", "num_experts_per_tok": 2}, "nemotron_h"),
        ({"layers_block_type": ["linear_attention", "mlp"], "n_routed_experts": 8}, "nemotron_h"),
        ({"hybrid_override_pattern": "ME*E"}, "nemotron_h_moe"),
        ({"layers_block_type": ["linear_attention", "moe"]}, "nemotron_h_moe"),
    ):
        assert architecture_for("NemotronHForCausalLM", path, config).gguf_arch == gguf_arch
    rows = json.loads(_mfc("convert", "--list-architectures", "--json").stdout)
    listed = {
        r["gguf"]: (r["selected_by"], r["selected_when"])
        for r in rows["architectures"]
        if r["hf"] == "NemotronHForCausalLM"
    }
    assert listed == {
        "nemotron_h": (None, None),
        "nemotron_h_moe": ("hybrid_override_pattern", "has MoE blocks (E)"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M"])
def test_quantized_like_llama_quantize(ftype: str, converted, tmp_path: Path) -> None:
    """mfc's quantizer on the converted F16 file writes llama-quantize's bytes: the
    Mamba-2 tensors (A, D, conv1d, grouped norm) stay F32 there too."""
    from quant_reference import reference, sha256_file

    import quant

    src = converted(tiny(NEMOTRON_H.name), "f16")
    out = tmp_path / f"{ftype}.gguf"
    quant.quantize_file(src, out, ftype, threads=2)
    assert sha256_file(out) == reference(src, ftype).sha256
