"""The heavy passes (quantize, convert) and their cache: unchanged inputs do no tensor work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures.tiny_gguf import write_tiny_model
from toolchain.build import BuildError, CreateRequest, SourceDir, SourceFile, build
from toolchain.build import convert as convert_pass
from toolchain.build import quantize as quantize_pass
from toolchain.build.cache import cache_key
from toolchain.progress import ProgressEvent
from toolchain.store import Store, parse_name

FILE_TYPES = {"Q4_K_M": 15, "Q8_0": 7}


class FakeQuantizer:
    """Stands in for quant.quantize_file: writes a GGUF whose file type is the target's."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []

    def __call__(
        self, src: Path, dst: Path, target: str, progress: Any, imatrix: Path | None = None
    ) -> None:
        self.calls.append((src, target))
        progress(0.5)
        write_tiny_model(dst, file_type=FILE_TYPES[target], seed=99)
        progress(1.0)


@pytest.fixture
def fake_quant(monkeypatch: pytest.MonkeyPatch) -> FakeQuantizer:
    fake = FakeQuantizer()
    monkeypatch.setattr(quantize_pass, "run_quantizer", fake)
    return fake


def manifest(store: Store, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(store.manifest_path(parse_name(name)).read_bytes())
    return doc


def test_quantize_is_cached(store: Store, tiny_dir: Path, fake_quant: FakeQuantizer) -> None:
    request = CreateRequest(
        files=(SourceFile("f32.gguf", tiny_dir / "f32.gguf"),), quantize="q4_K_M"
    )
    events: list[ProgressEvent] = []
    first = build(store, parse_name("q"), request, progress=events.append)
    assert len(fake_quant.calls) == 1
    quantizing = [e for e in events if e.status == "quantizing F32 model to Q4_K_M"]
    assert quantizing and quantizing[-1].digest == "0" * 19
    assert quantizing[-1].total == (tiny_dir / "f32.gguf").stat().st_size
    model = manifest(store, "q")["layers"][0]
    assert "from" not in model  # a rewritten layer loses the file's name, as in the reference
    config = json.loads(store.blobs.read_bytes(manifest(store, "q")["config"]["digest"]))
    assert config["file_type"] == "Q4_K_M"
    assert f"creating new layer {model['digest']}" in [e.status for e in events]

    second = build(store, parse_name("q"), request)
    assert len(fake_quant.calls) == 1  # no tensor work
    assert second.digest == first.digest and second.new_blobs == ()
    # another type is another cache entry
    build(
        store,
        parse_name("q8"),
        CreateRequest(files=(SourceFile("f32.gguf", tiny_dir / "f32.gguf"),), quantize="q8_0"),
    )
    assert [t for _, t in fake_quant.calls] == ["Q4_K_M", "Q8_0"]


def test_quantize_refuses_quantized_input_and_skips_same_type(
    store: Store, tiny_dir: Path, fake_quant: FakeQuantizer
) -> None:
    q41 = tiny_dir / "q41.gguf"
    write_tiny_model(q41, file_type=3, seed=5)
    with pytest.raises(BuildError, match="only supported for F16, BF16 and F32 models, not Q4_1"):
        build(
            store,
            parse_name("x"),
            CreateRequest(files=(SourceFile("q41.gguf", q41),), quantize="q4_K_M"),
        )
    build(
        store,
        parse_name("same"),
        CreateRequest(files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),), quantize="F16"),
    )
    assert fake_quant.calls == []
    assert manifest(store, "same")["layers"][0]["from"] == "tiny.gguf"


def test_cache_key_covers_every_input() -> None:
    base = cache_key("sha256:" + "a" * 64, "quantize", 1, {"type": "Q4_K_M"})
    assert base == cache_key("sha256:" + "a" * 64, "quantize", 1, {"type": "Q4_K_M"})
    assert (
        len(
            {
                base,
                cache_key("sha256:" + "b" * 64, "quantize", 1, {"type": "Q4_K_M"}),
                cache_key("sha256:" + "a" * 64, "convert", 1, {"type": "Q4_K_M"}),
                cache_key("sha256:" + "a" * 64, "quantize", 2, {"type": "Q4_K_M"}),
                cache_key("sha256:" + "a" * 64, "quantize", 1, {"type": "Q8_0"}),
            }
        )
        == 5
    )


def test_convert_folder_once(
    store: Store, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real = convert_pass.convert_hf_dir

    def counting(src: Path, out: Path, outtype: str, progress: Any = None) -> Any:
        calls.append(src)
        return real(src, out, outtype, progress=progress)

    monkeypatch.setattr(convert_pass, "convert_hf_dir", counting)
    request = CreateRequest(convert_dirs=(SourceDir(minilm_dir),))
    events: list[ProgressEvent] = []
    first = build(store, parse_name("minilm"), request, progress=events.append)
    assert "converting model" in [e.status for e in events]
    layers = manifest(store, "minilm")["layers"]
    assert [x["mediaType"] for x in layers] == ["application/vnd.ollama.image.model"]
    config = json.loads(store.blobs.read_bytes(manifest(store, "minilm")["config"]["digest"]))
    assert (config["model_family"], config["file_type"]) == ("bert", "F16")
    second = build(store, parse_name("minilm"), request)
    assert len(calls) == 1 and second.digest == first.digest and second.new_blobs == ()


def test_real_quantize_q8_0(store: Store, minilm_dir: Path) -> None:
    """Convert then quantize with the real kernels (quant.quantize_file); cached after."""
    quant = pytest.importorskip("quant")
    if not hasattr(quant, "quantize_file"):
        pytest.skip("quant.quantize_file is not there yet")
    request = CreateRequest(convert_dirs=(SourceDir(minilm_dir),), quantize="q8_0")
    events: list[ProgressEvent] = []
    first = build(store, parse_name("mini-q8"), request, progress=events.append)
    assert any(e.status == "quantizing F16 model to Q8_0" for e in events)
    config = json.loads(store.blobs.read_bytes(manifest(store, "mini-q8")["config"]["digest"]))
    assert config["file_type"] == "Q8_0"
    events.clear()
    second = build(store, parse_name("mini-q8"), request, progress=events.append)
    assert second.digest == first.digest and second.new_blobs == ()
    assert not any(e.status.startswith(("quantizing", "converting")) for e in events)


def test_quantized_input_is_refused(store: Store, smollm2_gguf: Path) -> None:
    with pytest.raises(BuildError, match="not Q4_1"):
        build(
            store,
            parse_name("s"),
            CreateRequest(
                files=(SourceFile("s.gguf", smollm2_gguf, digest="sha256:" + "0" * 64),),
                quantize="q4_K_M",
            ),
        )
    assert not store.root.exists()
