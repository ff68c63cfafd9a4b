"""llama.cpp's per-tensor type choice for a file type (`src/llama-quant.cpp`): which tensors
are quantized, to what, in which order, and when an importance matrix is required."""

from __future__ import annotations

import re
from dataclasses import dataclass

from quant.errors import QuantError
from quant.filetypes import FileType
from quant.formats import BY_ID, FORMATS
from quant.gguf_read import TensorInfo


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """The hyper-parameters the policy looks at."""

    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        if self.arch == "llama":
            return self.n_layer == 80 and self.n_head != self.n_head_kv
        seventy = {("deci", 80), ("olmo", 80), ("qwen2", 80), ("jais2", 68)}
        return (self.arch, self.n_layer) in seventy


@dataclass(frozen=True, slots=True)
class Plan:
    """One tensor of the output: where it comes from and the type it is written as."""

    tensor: TensorInfo
    target: int  # ggml type id
    quantize: bool  # False: bytes are copied unchanged
    requires_imatrix: bool


_LAYER = re.compile(r"blk\.\s*([+-]?\d+)")


def layer_of(name: str) -> int:
    """`sscanf(name, "blk.%d.", &layer)`, -1 when the name has no block number."""
    m = _LAYER.match(name)
    return int(m.group(1)) if m else -1


def sort_key(name: str) -> tuple[int, bytes]:
    """llama's `weight_name_comparer`: block number, then the name byte by byte."""
    return layer_of(name), name.encode()


_NEVER = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
    *(
        f"time_mix_{s}.weight"
        for s in (
            "first",
            "w0",
            "w1",
            "w2",
            "v0",
            "v1",
            "v2",
            "a0",
            "a1",
            "a2",
            "g1",
            "g2",
            "decay_w1",
            "decay_w2",
            "lerp_fused",
        )
    ),
)
_NEVER_GLM5 = (
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
)


def allows_quantization(t: TensorInfo, arch: str, quantize_output: bool = True) -> bool:
    """`tensor_allows_quantization`: 2-D+ weights other than norms, embeddings of position, ..."""
    name = t.name
    if t.n_dims < 2 or not name.endswith("weight"):
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    if not quantize_output and name == "output.weight":
        return False
    if arch == "glm5-next" and any(s in name for s in _NEVER_GLM5):
        return False
    return not any(s in name for s in _NEVER)


_CATEGORIES = (
    ("attn_qkv.weight", "attn_v"),
    ("attn_kv_b.weight", "attn_v"),
    ("attn_v.weight", "attn_v"),
    ("attn_k.weight", "attn_k"),
    ("attn_q.weight", "attn_q"),
    ("attn_output.weight", "attn_output"),
    ("ffn_up", "ffn_up"),
    ("ffn_gate", "ffn_gate"),
    ("ffn_down", "ffn_down"),
)


def category(name: str) -> str:
    """`tensor_get_category`; the three attn_v-like categories are one here."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, cat in _CATEGORIES:
        if needle in name:
            return cat
    return "other"


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or _cmod(i - n // 8, 3) == 2


def _cmod(a: int, b: int) -> int:
    """C's `%` (truncating)."""
    r = abs(a) % b
    return -r if a < 0 else r


_FALLBACK = {
    "Q2_K": "Q4_0",
    "Q3_K": "Q4_0",
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
    **dict.fromkeys(
        ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"
    ),
}
#: ggml ids of the lattice i-quants, which the policy can choose before mfc has their
#: kernels (all are 256-element super-blocks); planning works, quantizing refuses. Those
#: with kernels are also in `quant.formats`, which wins.
LATTICE_IDS = {"IQ2_XXS": 16, "IQ2_XS": 17, "IQ3_XXS": 18, "IQ1_S": 19, "IQ2_S": 22, "IQ1_M": 29}
#: tensor types only made well with an importance matrix (`tensor_requires_imatrix`)
NEEDS_IMATRIX = frozenset(("IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"))
#: file types whose low-bit rules are one group in `llama_tensor_get_type_impl`
_IQ_LOW = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def _block(target: str) -> int:
    return FORMATS[target].block if target in FORMATS else 256


def type_id(target: str) -> int:
    """The ggml id of a tensor type the policy chose."""
    return FORMATS[target].type_id if target in FORMATS else LATTICE_IDS[target]


def type_name(type_id: int) -> str:
    """The name of a ggml type id the policy can choose."""
    if type_id in BY_ID:
        return BY_ID[type_id].name
    return next((k for k, v in LATTICE_IDS.items() if v == type_id), str(type_id))


def _fallback(t: TensorInfo, target: str) -> str:
    """`tensor_type_fallback`: a type whose blocks divide the row, else F16."""
    if t.ne[0] % _block(target) == 0:
        return target
    out = _FALLBACK.get(target, target)
    return out if t.ne[0] % _block(out) == 0 else "F16"


class _Mix:
    """`llama_tensor_get_type_impl` for the K-quant and legacy file types, with its counters."""

    def __init__(
        self,
        facts: ModelFacts,
        ftype: FileType,
        tensors: list[TensorInfo],
        *,
        has_imatrix: bool,
        output_type: str | None,
    ) -> None:
        self.facts = facts
        self.f = ftype.name
        self.has_imatrix = has_imatrix
        self.output_type = output_type
        names = [t.name for t in tensors]
        self.n_attention_wv = sum(category(n) == "attn_v" for n in names)
        self.tied = "output.weight" not in names
        self.i_wv = self.i_down = self.i_gate = self.i_up = 0

    def _layer(self, counter: int, name: str) -> tuple[int, int]:
        n = self.facts.n_layer
        if max(1, self.facts.n_expert) > 1:
            i = layer_of(name)
            if i < 0 or i >= n:
                raise QuantError(f"cannot tell the layer of tensor {name!r}", tensor=name)
            return i, n
        return counter, n

    def choose(self, t: TensorInfo, cat: str, new: str) -> str:
        f, facts, falcon = self.f, self.facts, self.facts.arch == "falcon"
        if cat == "output" or (self.tied and cat == "token_embd"):
            if self.output_type:
                return self.output_type
            if falcon or t.ne[0] % _block(new):
                return "Q8_0"
            if f in (*_IQ_LOW, "IQ3_XXS"):
                return "Q5_K"
            return "Q6_K" if new != "Q8_0" else new
        if cat == "token_embd":
            if f in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                return "Q2_K"
            return "IQ3_S" if f in ("IQ2_S", "IQ2_M", "IQ3_XXS") else new
        if f in _IQ_LOW:
            return self._iq_low(t, cat, new)
        if cat == "attn_v":
            gqa4 = facts.n_gqa >= 4
            if f == "Q2_K":
                new = "Q4_K" if gqa4 else "Q3_K"
            elif f == "Q2_K_S" and gqa4:
                new = "Q4_K"
            elif f == "IQ3_XXS":
                new = "Q4_K" if gqa4 else "IQ3_XXS" if self.has_imatrix else "IQ3_S"
            elif (f in ("IQ3_XS", "IQ3_S") and gqa4) or f == "IQ3_M":
                new = "Q4_K"
            elif f == "Q3_K_M":
                new = "Q5_K" if self.i_wv < 2 else "Q4_K"
            elif f == "Q3_K_L" or (f in ("IQ4_NL", "IQ4_XS") and gqa4):
                new = "Q5_K"
            elif f in ("Q4_K_M", "Q5_K_M") and use_more_bits(self.i_wv, self.n_attention_wv):
                new = "Q6_K"
            elif f == "Q4_K_S" and self.i_wv < 4:
                new = "Q5_K"
            if facts.is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if facts.n_expert == 8:
                new = "Q8_0"
            self.i_wv += 1
        elif cat == "attn_k" and facts.n_expert == 8:
            new = "Q8_0"
        elif cat in ("attn_k", "attn_q"):
            new = {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(f, new)
        elif cat == "ffn_down":
            i, n = self._layer(self.i_down, t.name)
            new = self._ffn_down(f, i, n, new, falcon)
            self.i_down += 1
        elif cat == "attn_output":
            if falcon:
                new = "Q4_K" if f == "Q3_K_L" else new
            elif facts.n_expert == 8:
                if f in (
                    "Q2_K",
                    "IQ3_XS",
                    "IQ3_XXS",
                    "Q3_K_S",
                    "Q3_K_M",
                    "IQ4_NL",
                    "Q4_K_S",
                    "Q4_K_M",
                    "IQ3_S",
                    "IQ3_M",
                    "IQ4_XS",
                ):
                    new = "Q5_K"
            else:
                new = {
                    "Q2_K": "Q3_K",
                    "IQ3_XXS": "IQ3_S",
                    "Q3_K_M": "Q4_K",
                    "Q3_K_L": "Q5_K",
                    "IQ3_M": "Q4_K",
                }.get(f, new)
        elif cat in ("ffn_gate", "ffn_up"):
            i, n = self._layer(self.i_gate if cat == "ffn_gate" else self.i_up, t.name)
            if f == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
                new = "IQ3_XXS"
            if cat == "ffn_gate":
                self.i_gate += 1
            else:
                self.i_up += 1
        return new

    def _iq_low(self, t: TensorInfo, cat: str, new: str) -> str:
        """The rules of the IQ1/IQ2 file types; they advance only the attn_v and ffn_down
        counters."""
        f, facts = self.f, self.facts
        s_or_m = f in ("IQ2_S", "IQ2_M")
        if cat == "attn_v":
            self.i_wv += 1
            if facts.n_gqa >= 4 or facts.n_expert >= 4:
                return "Q4_K"
            return "IQ3_S" if s_or_m else "Q2_K"
        if cat == "attn_k" and facts.n_expert == 8:
            return "Q4_K"
        if cat == "ffn_down":
            low = self.i_down < self.facts.n_layer // 8
            self.i_down += 1
            return ("IQ3_S" if s_or_m else "Q2_K") if low else new
        if cat == "attn_output":
            if facts.n_expert == 8:
                return "Q5_K"
            if f in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            return "IQ3_S" if s_or_m else new
        return new

    def _ffn_down(self, f: str, i: int, n: int, new: str, falcon: bool) -> str:
        if f == "Q2_K":
            return "Q3_K"
        if f == "Q2_K_S":
            return "Q4_K" if i < n // 8 else new
        if f == "IQ3_XXS" and not self.has_imatrix:
            return "Q4_K" if i < n // 8 else "Q3_K"
        if f == "Q3_K_M":
            if i < n // 16:
                return "Q5_K"
            return "Q4_K" if not falcon or use_more_bits(i, n) else "Q3_K"
        if f == "IQ3_M" and (i < n // 8 or (self.facts.n_expert == 8 and use_more_bits(i, n))):
            return "Q4_K"
        if f == "Q3_K_L":
            return "Q4_K" if falcon else "Q5_K"
        if f == "Q4_K_M":
            if falcon:
                return "Q6_K" if i < n // 16 else "Q5_K" if use_more_bits(i, n) else "Q4_K"
            return "Q6_K" if use_more_bits(i, n) else new
        if i < n // 8 and f in ("IQ4_NL", "IQ4_XS") and not self.has_imatrix:
            return "Q5_K"
        if f == "Q5_K_M" and use_more_bits(i, n):
            return "Q6_K"
        if f == "Q4_K_S" and not falcon and i < n // 8:
            return "Q5_K"
        if f in ("Q4_0", "Q5_0") and self.has_imatrix and i < n // 8:
            return "Q4_1" if f == "Q4_0" else "Q5_1"
        return new


def plan_tensors(
    tensors: list[TensorInfo],
    facts: ModelFacts,
    ftype: FileType,
    *,
    pure: bool = False,
    has_imatrix: bool = False,
    output_type: str | None = None,
    token_embedding_type: str | None = None,
    quantize_output: bool = True,
) -> list[Plan]:
    """The output tensors in llama.cpp's order, each with the type it will be written as."""
    ordered = sorted(tensors, key=lambda t: sort_key(t.name))
    mix = _Mix(facts, ftype, ordered, has_imatrix=has_imatrix, output_type=output_type)
    default = ftype.default
    plans = []
    for t in ordered:
        cat = category(t.name)
        if not allows_quantization(t, facts.arch, quantize_output):
            plans.append(Plan(t, t.type_id, False, False))
            continue
        if token_embedding_type and cat == "token_embd":
            target = token_embedding_type
        elif output_type and cat == "output":
            target = output_type
        else:
            target = default
            if default not in FORMATS or FORMATS[default].quantized:
                if not pure:
                    target = mix.choose(t, cat, target)
                target = _fallback(t, target)
        needs = (target in NEEDS_IMATRIX or (target == "Q2_K" and ftype.name == "Q2_K_S")) and (
            t.name not in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight")
        )
        tid = type_id(target)
        plans.append(Plan(t, tid, tid != t.type_id, needs))
    return plans
