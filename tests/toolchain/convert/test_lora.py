"""A PEFT LoRA (random A and B, rank 4, alpha 8) on tiny-llama: converted to a GGUF LoRA
and applied by llama.cpp on the converted base, against transformers + peft.

The adapter moves the logits by ~12 (max |Δ|); llama.cpp with our adapter must land
where peft does. Tolerance (max |Δlogit| / max |logit|): F32 2e-4 (measured ~5e-6), and
the applied delta itself within 1e-3 of its size. F16 3e-2 (measured 1.5e-2): besides
the base's rounding, llama.cpp rounds the activations entering A and B to F16, and this
deliberately strong random adapter contributes more to the logits than the base does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from tests.toolchain.convert.oracle import llama_logits, load_llama, relative_error
from toolchain.convert import convert_lora

pytestmark = pytest.mark.oracle

PROMPT = "The quick brown fox jumps over the lazy dog. 12345 東京"
TOLERANCE = {"f32": 2e-4, "f16": 3e-2}


@pytest.mark.parametrize("outtype", ["f32", "f16"])
@pytest.mark.parametrize("base_kind", ["gguf", "hf"])
def test_adapter_moves_logits_like_peft(
    outtype: str, base_kind: str, tiny_models_dir: Path, converted, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, lora_dir = tiny_models_dir / "tiny-llama", tiny_models_dir / "tiny-llama-lora"
    base_gguf = converted(base_dir, outtype)
    lora_gguf = tmp_path / "lora.gguf"
    convert_lora(
        lora_dir, lora_gguf, base=base_gguf if base_kind == "gguf" else base_dir, outtype=outtype
    )

    ids = AutoTokenizer.from_pretrained(str(base_dir))(PROMPT)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        ref_base = model(torch.tensor([ids])).logits[0].numpy()
        adapted = PeftModel.from_pretrained(model, str(lora_dir)).eval()
        ref_lora = adapted(torch.tensor([ids])).logits[0].numpy()

    plain = load_llama(base_gguf, logits_all=True)
    with_lora = load_llama(base_gguf, logits_all=True, lora_path=str(lora_gguf))
    try:
        ours_base, ours_lora = llama_logits(plain, ids), llama_logits(with_lora, ids)
    finally:
        plain.close()
        with_lora.close()

    assert np.abs(ref_lora - ref_base).max() > 1.0  # the adapter really changes the model
    assert relative_error(ours_lora, ref_lora) <= TOLERANCE[outtype]
    if outtype == "f32":
        assert relative_error(ours_lora - ours_base, ref_lora - ref_base) <= 1e-3


def test_adapter_metadata(tiny_models_dir: Path, converted, tmp_path: Path) -> None:
    out = tmp_path / "lora.gguf"
    convert_lora(
        tiny_models_dir / "tiny-llama-lora",
        out,
        base=converted(tiny_models_dir / "tiny-llama", "f16"),
    )
    reader = GGUFReader(out)
    fields = {k: f.contents() for k, f in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0
    names = {t.name for t in reader.tensors}
    assert {
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
        "blk.1.ffn_down.weight.lora_b",
    } <= names
    assert not any("ffn_up" in n for n in names)  # not a target module
