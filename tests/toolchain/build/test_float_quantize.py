"""QUANTIZE to a float type rounds the weights once, as the converter does.

A folder built with `QUANTIZE f32|f16|bf16` holds the tensors `mfc convert --outtype`
and llama.cpp's converter write for it (converting an F32 checkpoint to F16 first, then
to BF16, put 6.25% of tiny-llama's weights one BF16 step away); a K-quant starts from the
intermediate the reference's create converts to (F16, BF16 for a BF16 checkpoint); and a
float GGUF given to FROM becomes another float type holding what the converter writes.
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


@pytest.mark.parametrize(("dtype", "intermediate"), [("f32", "F16"), ("bf16", "BF16")])
def test_k_quant_starts_from_the_references_intermediate(
    dtype: str,
    intermediate: str,
    folders: dict[str, Path],
    converted: Converter,
    store: Store,
    tmp_path: Path,
) -> None:
    """The reference's create converts F32 weights to F16 and keeps BF16 ones BF16, then
    quantizes that file (store_api.md 2.4, 2.7): the layer is `mfc quantize` of it."""
    events: list[ProgressEvent] = []
    layer = build_model_layer(
        store, tmp_path, f"FROM {folders[dtype]}\nQUANTIZE q4_K_M\n", events.append
    )
    assert f"quantizing {intermediate} model to Q4_K_M" in {e.status for e in events}
    staged = tmp_path / "staged.gguf"
    quant.quantize_file(converted(dtype, intermediate.lower()), staged, "Q4_K_M")
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
