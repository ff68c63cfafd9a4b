"""`convert_projector`: a vision checkpoint's encoder and projector -> an mmproj GGUF.

The text model of the same folder is `convert_hf_dir`'s; this writes the other half, the
file llama.cpp's converter writes with `--mmproj` and libmtmd loads (`general.type`
mmproj, architecture "clip"). The projector is written in F16 or F32 (BF16 when asked):
the reference's runtime does not quantize projectors, so a quantized output type gives
an F16 projector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType

from toolchain.convert.arch.gguf_names import tensor_table
from toolchain.convert.arch.vision import Projector, VisionConfig, common_metadata, projector_for
from toolchain.convert.architecture import Architecture, HParams
from toolchain.convert.convert import QUANTIZATION_VERSION, ConvertResult, plan_tensors
from toolchain.convert.errors import ConvertError
from toolchain.convert.hf_dir import HFDir, open_hf_dir, read_json
from toolchain.convert.metadata import Metadata
from toolchain.convert.outtype import encoded_nbytes, resolve_outtype
from toolchain.convert.writer import PlannedTensor, input_files, write_gguf
from toolchain.progress import ProgressCallback, ProgressEvent, no_progress

#: the reference keeps the vision tower's position embedding in F32 whatever the type
_ALWAYS_F32 = ("v.position_embd.weight",)


def has_projector(src_dir: Path | str) -> bool:
    """Whether the folder is a vision checkpoint mfc converts a projector for."""
    config = read_json(Path(src_dir) / "config.json")
    archs = config.get("architectures")
    name = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    return projector_for(name) is not None and isinstance(config.get("vision_config"), dict)


def projector_path(model_out: Path) -> Path:
    """Where `mfc convert` puts the projector of OUT.gguf: mmproj-OUT.gguf beside it (the
    reference's `mmproj-` file name prefix)."""
    return model_out.with_name("mmproj-" + model_out.name)


def convert_projector(
    src_dir: Path | str,
    out_path: Path | str,
    outtype: str = "f16",
    progress: ProgressCallback | None = None,
) -> ConvertResult:
    """Write the mmproj GGUF of a vision checkpoint to `out_path` (atomically)."""
    report = progress or no_progress
    out = Path(out_path)
    resolve_outtype(outtype, None)
    with open_hf_dir(src_dir) as hf:
        proj = projector_for(hf.architecture)
        if proj is None:
            raise ConvertError(
                hf.file("config.json"), f"{hf.architecture} has no vision projector mfc converts"
            )
        config = _vision_config(hf)
        out_type = resolve_outtype(outtype, hf.first_weight_dtype)
        if out_type.quantize is not None or out_type.ggml is None:
            out_type = resolve_outtype("f16", None)
        report(ProgressEvent(f"reading the {proj.family} projector of {hf.path}"))
        arch = _clip_arch(proj)
        tensors = plan_tensors(hf, arch, config.vision, out_type, 0)
        if not tensors:
            raise ConvertError(hf.path, "no vision tensors in the checkpoint")
        assert out_type.ggml is not None
        tensors = [_forced(t, proj, out_type.ggml) for t in tensors]
        tensors.sort(key=lambda t: t.source.name if t.source is not None else t.name)
        md = Metadata("clip")
        md.string("general.architecture", "clip")
        md.string("general.type", "mmproj")
        md.u32("general.file_type", int(out_type.file_type))
        common_metadata(config, md)
        proj.metadata(config, md)
        md.u32("general.quantization_version", QUANTIZATION_VERSION)
        write_gguf(
            out,
            md,
            tensors,
            config.vision,
            progress=report,
            status="converting projector",
            inputs=input_files(hf.path),
        )
    report(ProgressEvent(f"wrote {out}"))
    return ConvertResult(
        out, "clip", out_type.name, int(out_type.file_type), len(tensors), out.stat().st_size
    )


def _vision_config(hf: HFDir) -> VisionConfig:
    path = hf.file("config.json")
    vision = hf.config.get("vision_config")
    if not isinstance(vision, dict):
        raise ConvertError(path, 'no "vision_config" object')
    text = hf.config.get("text_config")
    top = {**hf.config, **(text if isinstance(text, dict) else {})}
    preprocessor: dict[str, Any] = dict(read_json(hf.file("preprocessor_config.json")))
    processor = read_json(hf.file("processor_config.json"))
    inner = processor.get("image_processor")
    preprocessor.update({**processor, **(inner if isinstance(inner, dict) else {})})
    for key in ("image_mean", "image_std"):
        value = preprocessor.get(key)
        if not isinstance(value, list) or not all(isinstance(x, int | float) for x in value):
            raise ConvertError(
                hf.file("preprocessor_config.json"),
                f"missing {key!r} (a list of numbers), which the projector needs",
            )
    proj = projector_for(hf.architecture)
    assert proj is not None
    return VisionConfig(
        HParams(proj.vision_config(vision), path),
        HParams(top, path),
        HParams(hf.config, path),
        preprocessor,
    )


def _clip_arch(proj: Projector) -> Architecture:
    """The projector as the converter's Architecture: gguf-py's MMPROJ names, every tensor
    outside `proj.keep` dropped (those are the text model's). Its metadata is written by
    the caller, from the whole VisionConfig."""
    return Architecture(
        hf_names=proj.hf_names,
        gguf_arch="clip",
        tensors={**tensor_table("clip"), **proj.names},
        splits=proj.splits,
        metadata=lambda _h, _md: None,
        vocab=(),
        renames=proj.renames,
        skip=(f"(?!(?:{proj.keep})$).*", *proj.skip),
        transforms=proj.transforms,
        family=proj.family,
    )


def _forced(t: PlannedTensor, proj: Projector, out: GGMLQuantizationType) -> PlannedTensor:
    rule = proj.forced.get(t.name)
    ggml = rule(out) if rule is not None else None
    if ggml is None and t.name in _ALWAYS_F32:
        ggml = GGMLQuantizationType.F32
    if ggml is None or ggml == t.ggml:
        return t
    t.ggml = ggml
    t.nbytes = encoded_nbytes(t.shape, ggml)
    return t
