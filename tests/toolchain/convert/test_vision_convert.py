"""Vision checkpoints convert into two GGUFs, the text model and the projector, and the
projector is the file llama.cpp's converter writes with `--mmproj` for the same checkpoint:
every tensor (name, type, shape, bytes) and every key, `clip.projector_type` included.

The checkpoints are fixtures/vision_models.py's tiny random Gemma 3 (SigLIP + Gemma 3's
projector), Idefics3 (SmolVLM's architecture: SigLIP + pixel-shuffle connector) and Qwen2-VL
(its ViT with fused QKV cut in three and a Conv3D patch embedding cut into two Conv2Ds, the
2x2 merger; the text model with M-RoPE sections) and Qwen2.5-VL (as Qwen2-VL, plus its
window-attention pattern), with the reference converter's F16 files
beside them; F32 is converted by the reference here.
Only the model-card keys (`general.name`, `general.basename` ... which the reference derives
from the folder name) are not compared, as in the text-model comparisons.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.local_server import mfc_command
from tests.conftest import MODELS
from tests.toolchain.convert.breadth import FLAGS, SPM_MASK
from tests.toolchain.convert.reference_convert import differences, fields, reference_script
from toolchain.convert import ConvertError, convert_hf_dir
from toolchain.convert.mmproj import convert_projector, has_projector

#: folder -> (reference GGUFs, the pre-tokenizer the reference is told, projector_type)
FAMILIES = {
    "tiny-gemma3-vision": ("tiny-gemma3-vision-gguf", "", "gemma3"),
    "tiny-smolvlm": ("tiny-smolvlm-gguf", "llama-bpe", "idefics3"),
    "tiny-qwen2vl": ("tiny-qwen2vl-gguf", "qwen2", "qwen2vl_merger"),
    "tiny-qwen25vl": ("tiny-qwen25vl-gguf", "qwen2", "qwen2.5vl_merger"),
}

#: what differs in the text model from the reference's, and why: the text converter's own
#: choices (the same as for the text-only checkpoints of these families)
TEXT_DIFFERENCES: dict[str, dict[str, str]] = {
    "tiny-gemma3-vision": {**FLAGS, **SPM_MASK},
    "tiny-smolvlm": FLAGS,
    "tiny-qwen2vl": {},
    "tiny-qwen25vl": {},
}

_RUNNER = """
import runpy, sys
sys.path.insert(0, ".")
pre = sys.argv.pop(1)
if pre:
    from conversion import base
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
runpy.run_path("convert_hf_to_gguf.py", run_name="__main__")
"""


def folder(name: str) -> Path:
    path = MODELS / name
    if not any((path / f).is_file() for f in ("config.json", "mmproj.gguf")):
        pytest.fail(f"fixture {path} is missing: run `make fixtures`")
    return path


def reference_mmproj(src: Path, out: Path, outtype: str, pre: str) -> Path:
    script = reference_script()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUNNER,
            pre,
            str(src),
            "--mmproj",
            "--outtype",
            outtype,
            "--outfile",
            str(out),
        ],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_projector_equals_the_reference_mmproj(name: str, tmp_path: Path) -> None:
    ref_dir, _pre, kind = FAMILIES[name]
    ours = convert_projector(folder(name), tmp_path / "mmproj.gguf", "f16").path
    theirs = folder(ref_dir) / "mmproj.gguf"
    assert differences(ours, theirs) == []
    assert fields(ours)["clip.projector_type"] == kind
    from gguf import GGUFReader

    assert GGUFReader(ours).fields["general.type"].contents() == "mmproj"


@pytest.mark.parametrize("name", FAMILIES)
def test_f32_projector_equals_the_reference_mmproj(name: str, tmp_path: Path) -> None:
    """At F32 the families' fixed types show: Gemma 3's input projection stays F16."""
    _ref, pre, _kind = FAMILIES[name]
    src = folder(name)
    ours = convert_projector(src, tmp_path / "ours.gguf", "f32").path
    theirs = reference_mmproj(src, tmp_path / "theirs.gguf", "f32", pre)
    assert differences(ours, theirs) == []


@pytest.mark.parametrize("name", FAMILIES)
def test_text_model_differs_only_as_listed(name: str, tmp_path: Path) -> None:
    ref_dir, _pre, _kind = FAMILIES[name]
    ours = convert_hf_dir(folder(name), tmp_path / "text.gguf", "f16").path
    found = differences(ours, folder(ref_dir) / "text.gguf")
    explained = TEXT_DIFFERENCES[name]
    assert [d for d in found if d.split(":")[0] not in explained] == []
    assert {d.split(":")[0] for d in found} == set(explained), "a listed difference is gone"
    assert not any(d.startswith("tensor ") for d in found)


def test_mfc_convert_writes_the_model_and_its_projector(tmp_path: Path) -> None:
    src = folder("tiny-smolvlm")
    cmd = [*mfc_command(), "convert", str(src), str(tmp_path / "m.gguf"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["architecture"] == "llama"
    assert result["projector"]["path"] == str(tmp_path / "mmproj-m.gguf")
    assert result["projector"]["architecture"] == "clip"
    assert (
        differences(tmp_path / "mmproj-m.gguf", folder("tiny-smolvlm-gguf") / "mmproj.gguf") == []
    )
    other = tmp_path / "elsewhere.gguf"
    done = subprocess.run(
        [*cmd[:-1], "--mmproj", str(other)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and other.is_file(), done.stderr


def test_only_vision_checkpoints_have_a_projector(tmp_path: Path) -> None:
    assert has_projector(folder("tiny-gemma3-vision"))
    assert not has_projector(folder("tiny-gemma3"))
    with pytest.raises(ConvertError, match="has no vision projector"):
        convert_projector(folder("tiny-gemma3"), tmp_path / "x.gguf")


def test_a_vision_checkpoint_without_its_image_settings_is_refused(tmp_path: Path) -> None:
    """The projector records the image normalisation; without it the encoder would see
    wrongly scaled pixels, so nothing is written."""
    copy = tmp_path / "model"
    copy.mkdir()
    for f in folder("tiny-smolvlm").iterdir():
        if f.name != "preprocessor_config.json" and f.is_file():
            (copy / f.name).symlink_to(f)
    with pytest.raises(ConvertError, match="image_mean") as err:
        convert_projector(copy, tmp_path / "x.gguf")
    assert err.value.file == str(copy / "preprocessor_config.json")
    assert not (tmp_path / "x.gguf").exists()


def test_an_uneven_window_attention_pattern_is_refused(tmp_path: Path) -> None:
    """llama.cpp knows Qwen2.5-VL's full-attention blocks only as "every n-th block": a
    config it cannot express is an error, not a projector that attends wrongly."""
    copy = tmp_path / "model"
    copy.mkdir()
    for f in folder("tiny-qwen25vl").iterdir():
        if f.name != "config.json" and f.is_file():
            (copy / f.name).symlink_to(f)
    config = json.loads((folder("tiny-qwen25vl") / "config.json").read_text())
    config["vision_config"]["fullatt_block_indexes"] = [1, 2]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConvertError, match="not evenly spaced"):
        convert_projector(copy, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_a_quantized_output_type_leaves_the_projector_f16(tmp_path: Path) -> None:
    """As the reference's runtime never quantizes projectors: `--outtype q8_0` quantizes the
    text model only, and the projector is the F16 one."""
    result = convert_projector(folder("tiny-smolvlm"), tmp_path / "mmproj.gguf", "q8_0")
    assert (result.outtype, result.file_type) == ("f16", 1)
    assert differences(result.path, folder("tiny-smolvlm-gguf") / "mmproj.gguf") == []
