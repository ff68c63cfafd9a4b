"""The float types a folder build writes; QUANTIZE to one rounds the weights once.

Without QUANTIZE a folder becomes what the reference's converter writes: F16, except that
a matrix the checkpoint stores as BF16 stays BF16 (tensor by tensor), with the file type
F16. A folder built with `QUANTIZE f32|f16|bf16` holds the tensors `mfc convert --outtype`
and llama.cpp's converter write for it (converting an F32 checkpoint to F16 first, then
to BF16, put 6.25% of tiny-llama's weights one BF16 step away); a K-quant starts from the
intermediate the reference's create converts to (the no-QUANTIZE file); and a float GGUF
given to FROM becomes another float type holding what the converter writes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf import GGUFReader

import quant
from tests.toolchain.convert.reference_convert import run_reference
from toolchain.build import build_modelfile
from toolchain.convert import convert_hf_dir
from toolchain.frontend.parse import load_modelfile
from toolchain.progress import ProgressCallback, ProgressEvent, no_progress
from toolchain.store import Store, parse_name

MODEL = "application/vnd.ollama.image.model"
Tensors = dict[str, tuple[str, tuple[int, ...], bytes]]
Converter = Callable[[str, str], Path]


def tensors(path: Path) -> Tensors:
    """Every tensor's type, shape and bytes."""
    return {
        t.name: (t.tensor_type.name, tuple(int(d) for d in t.shape), t.data.tobytes())
        for t in GGUFReader(path).tensors
    }


@pytest.fixture(scope="module")
def folders(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tiny-llama (F32 weights) and copies of it with the weights stored as F16 and BF16."""
    import torch
    from safetensors.torch import load_file, save_file

    src = tiny_models_dir / "tiny-llama"
    out = {"f32": src}
    for dtype, torch_dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        copy = Path(shutil.copytree(src, tmp_path_factory.mktemp("folders") / f"tiny-{dtype}"))
        for file in sorted(copy.glob("*.safetensors")):
            weights = load_file(str(file))
            save_file(
                {k: v.to(torch_dtype).contiguous() for k, v in weights.items()},
                str(file),
                metadata={"format": "pt"},
            )
        out[dtype] = copy
    return out


def mixed_copy(bf16: Path, dst: Path) -> Path:
    """The BF16 folder with one matrix of each block stored as F32 and one as F16."""
    import torch
    from safetensors.torch import load_file, save_file

    copy = Path(shutil.copytree(bf16, dst))
    for file in sorted(copy.glob("*.safetensors")):
        weights = load_file(str(file))
        for name in list(weights):
            if name.endswith("self_attn.q_proj.weight"):
                weights[name] = weights[name].to(torch.float32)
            elif name.endswith("mlp.up_proj.weight"):
                weights[name] = weights[name].to(torch.float16)
        save_file(weights, str(file), metadata={"format": "pt"})
    return copy


def references_type(name: str, shape: tuple[int, ...], source_dtype: str) -> str:
    """The type Ollama's converter (convert/reader.go, reader_safetensors.go at the pinned
    commit) gives a tensor of a llama checkpoint: vectors F32, matrices BF16 when stored
    as BF16 (not vision/projector ones), else F16."""
    if len(shape) <= 1 or name.endswith(".bias"):
        return "F32"
    if source_dtype == "BF16" and not name.startswith(("v.", "s.", "mm.")):
        return "BF16"
    return "F16"


def checkpoint_dtypes(folder: Path) -> dict[str, str]:
    """Each GGUF tensor name of a llama folder -> the dtype its checkpoint stores it in."""
    from toolchain.convert.hf_dir import open_hf_dir

    gguf_names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "lm_head.weight": "output.weight",
        "model.norm.weight": "output_norm.weight",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    out: dict[str, str] = {}
    with open_hf_dir(folder) as hf:
        for name, entry in hf.tensors.items():
            if name in gguf_names:
                out[gguf_names[name]] = entry.dtype
                continue
            _model, _layers, bid, part = name.removesuffix(".weight").split(".", 3)
            out[f"blk.{bid}.{gguf_names[part]}.weight"] = entry.dtype
    return out


@pytest.fixture(scope="module")
def converted(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Converter:
    """(folder dtype, outtype) -> `mfc convert --outtype` of that folder (made once)."""
    root = tmp_path_factory.mktemp("converted")
    made: dict[tuple[str, str], Path] = {}

    def convert(dtype: str, outtype: str) -> Path:
        if (dtype, outtype) not in made:
            out = root / f"{dtype}.{outtype}.gguf"
            convert_hf_dir(folders[dtype], out, outtype)
            made[dtype, outtype] = out
        return made[dtype, outtype]

    return convert


def build_model_layer(
    store: Store, tmp_path: Path, text: str, progress: ProgressCallback = no_progress
) -> Path:
    """Build the Modelfile `text`; the blob of its model layer."""
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(text)
    result = build_modelfile(store, parse_name("m"), load_modelfile(modelfile), progress=progress)
    (layer,) = [la for la in result.manifest.layers if la.media_type == MODEL]
    return store.blobs.path(layer.digest)


@pytest.mark.oracle
@pytest.mark.parametrize("target", ["bf16", "f16", "f32"])
def test_float_quantize_of_a_folder_is_the_converters_file(
    target: str, folders: dict[str, Path], converted: Converter, store: Store, tmp_path: Path
) -> None:
    """FROM an F32 checkpoint + QUANTIZE <float>: tensor for tensor what `mfc convert
    --outtype <float>` and llama.cpp's `convert_hf_to_gguf.py --outtype <float>` write."""
    events: list[ProgressEvent] = []
    layer = build_model_layer(
        store, tmp_path, f"FROM {folders['f32']}\nQUANTIZE {target}\n", events.append
    )
    ours = tensors(layer)
    assert ours == tensors(converted("f32", target))
    reference = run_reference(folders["f32"], tmp_path / "reference.gguf", target, None)
    assert ours == tensors(reference)
    assert not [e.status for e in events if e.status.startswith("quantizing")]


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_no_quantize_is_the_references_conversion(
    dtype: str, folders: dict[str, Path], converted: Converter, store: Store, tmp_path: Path
) -> None:
    """FROM a folder alone: F16 with the checkpoint's BF16 matrices kept BF16 and the file
    type F16 (the reference's converter); a BF16 checkpoint's tensors are then byte for
    byte `mfc convert --outtype auto`'s, an F32 one's `--outtype f16`'s."""
    layer = build_model_layer(store, tmp_path, f"FROM {folders[dtype]}\n")
    ours = tensors(layer)
    dtypes = checkpoint_dtypes(folders[dtype])
    assert {n: t for n, (t, _s, _b) in ours.items()} == {
        n: references_type(n, shape, dtypes[n]) for n, (_t, shape, _b) in ours.items()
    }
    assert ours == tensors(converted(dtype, "auto" if dtype == "bf16" else "f16"))
    assert GGUFReader(layer).get_field("general.file_type").contents() == 1  # type: ignore[union-attr]


def test_no_quantize_keeps_bf16_tensor_by_tensor(
    folders: dict[str, Path], store: Store, tmp_path: Path
) -> None:
    """A BF16 checkpoint with some matrices stored F32 or F16: those become F16, the rest
    stay BF16 (the reference decides per tensor; `--outtype auto` once for the file)."""
    folder = mixed_copy(folders["bf16"], tmp_path / "mixed")
    ours = tensors(build_model_layer(store, tmp_path, f"FROM {folder}\n"))
    dtypes = checkpoint_dtypes(folder)
    assert {dtypes["blk.0.attn_q.weight"], dtypes["blk.0.ffn_up.weight"]} == {"F32", "F16"}
    types = {n: t for n, (t, _s, _b) in ours.items()}
    assert types == {n: references_type(n, shape, dtypes[n]) for n, (_t, shape, _b) in ours.items()}
    assert types["blk.0.attn_q.weight"] == types["blk.1.ffn_up.weight"] == "F16"
    assert types["blk.0.attn_k.weight"] == "BF16"


def test_no_quantize_and_quantize_f16_are_cached_apart(
    folders: dict[str, Path], store: Store, tmp_path: Path
) -> None:
    """Of one BF16 folder, `QUANTIZE f16` is F16 and the plain build keeps BF16: the
    second build does not reuse the first's conversion."""
    f16 = tensors(build_model_layer(store, tmp_path, f"FROM {folders['bf16']}\nQUANTIZE f16\n"))
    plain = tensors(build_model_layer(store, tmp_path, f"FROM {folders['bf16']}\n"))
    assert (f16["blk.0.attn_q.weight"][0], plain["blk.0.attn_q.weight"][0]) == ("F16", "BF16")


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_k_quant_starts_from_the_references_intermediate(
    dtype: str,
    folders: dict[str, Path],
    converted: Converter,
    store: Store,
    tmp_path: Path,
) -> None:
    """The reference's create converts the folder as without QUANTIZE (BF16 matrices kept,
    file type F16, so it says F16 for either), then quantizes that file (store_api.md
    2.4, 2.7): the layer is `mfc quantize` of it."""
    events: list[ProgressEvent] = []
    layer = build_model_layer(
        store, tmp_path, f"FROM {folders[dtype]}\nQUANTIZE q4_K_M\n", events.append
    )
    assert "quantizing F16 model to Q4_K_M" in {e.status for e in events}
    staged = tmp_path / "staged.gguf"
    quant.quantize_file(converted(dtype, "ollama"), staged, "Q4_K_M")
    assert tensors(layer) == tensors(staged)


@pytest.mark.parametrize(
    ("source", "target"),
    [("f32", "bf16"), ("f32", "f16"), ("bf16", "f16"), ("bf16", "f32"), ("f16", "bf16")],
)
def test_float_gguf_to_another_float_is_the_converters_file(
    source: str, target: str, converted: Converter, store: Store, tmp_path: Path
) -> None:
    """FROM a <source> GGUF + QUANTIZE <target>: what the converter writes at <target>
    from the same weights (F32 -> BF16/F16 rounds once; BF16 -> F16 is exact but for the
    smallest magnitudes, and rounds them as the converter does)."""
    gguf = converted(source, source)
    layer = build_model_layer(store, tmp_path, f"FROM {gguf}\nQUANTIZE {target}\n")
    assert tensors(layer) == tensors(converted(source, target))
