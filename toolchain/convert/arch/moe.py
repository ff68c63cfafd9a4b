"""Mixture-of-experts decoders whose checkpoints store one tensor per expert; the
converter stacks them into `ffn_{gate,up,down}_exps` (see plan_tensors).

- MixtralForCausalLM -> "llama" with experts (Llama's Q/K permutation).
- Qwen2MoeForCausalLM -> "qwen2moe": routed experts plus a gated shared expert;
  llama.cpp has no tied-embedding fallback for it, so a tied head is written out.
- Qwen3MoeForCausalLM -> "qwen3moe": Qwen3's Q/K norms, routed experts only.
"""

from __future__ import annotations

from toolchain.convert.arch import decoder
from toolchain.convert.arch.dense import _write_llama
from toolchain.convert.arch.text import PERMUTE_QK, text_arch
from toolchain.convert.architecture import HParams
from toolchain.convert.metadata import Metadata

_ATTENTION = {k: v for k, v in decoder.SHAPES.items() if "ffn_" not in k}


def _write_qwen_moe(h: HParams, md: Metadata) -> None:
    decoder.write_common(h, md)
    ff = h.get("moe_intermediate_size", default=None)
    if ff is not None:
        md.u32("{arch}.expert_feed_forward_length", int(ff))
    shared = h.get("shared_expert_intermediate_size", default=None)
    if shared is not None:
        md.u32("{arch}.expert_shared_feed_forward_length", int(shared))


MIXTRAL = text_arch(("MixtralForCausalLM",), "llama", family="Mixtral",
                    metadata=_write_llama, transforms=PERMUTE_QK, shapes=_ATTENTION)
QWEN2MOE = text_arch(("Qwen2MoeForCausalLM",), "qwen2moe", family="Qwen2-MoE",
                     metadata=_write_qwen_moe, shapes=_ATTENTION, output_required=True)
QWEN3MOE = text_arch(("Qwen3MoeForCausalLM",), "qwen3moe", family="Qwen3-MoE",
                     metadata=_write_qwen_moe, shapes=_ATTENTION)
