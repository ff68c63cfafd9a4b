"""What a folder holds (spec §1.11, TestFilesForModel): the reference's group table, and
the build's reading of it (GGUF weights, a folder to convert, or an error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.build.errors import BuildError
from toolchain.build.sources import (
    ERR_MODEL_NOT_FOUND,
    ModelNotFoundError,
    files_for_directory,
    files_for_model,
    matches,
    sniff,
)

TEXT = b"test content"
BINARY = bytes(i % 256 for i in range(512))
ZIP = b"PK\x03\x04"
GGUF = b"GGUF\x03\x00\x00\x00" + bytes(24)

# TestFilesForModel: (files, what filesForModel returns: "all" or the list)
FILES_FOR_MODEL = [
    ({"model-00001-of-00002.safetensors": TEXT, "model-00002-of-00002.safetensors": TEXT,
      "config.json": TEXT, "tokenizer.json": TEXT, "chat_template.jinja": TEXT}, "all"),
    ({"model-00001-of-00001.safetensors": TEXT, "config.json": TEXT, "tokenizer.json": TEXT,
      "tokenizer.model": BINARY}, "all"),
    ({"model.safetensors": TEXT, "config.json": TEXT, "modules.json": TEXT,
      "2_Dense/config.json": TEXT, "2_Dense/model.safetensors": TEXT,
      "3_Dense/config.json": TEXT, "3_Dense/model.safetensors": TEXT}, "all"),
    ({"model-00001-of-00001.safetensors": TEXT, "consolidated.safetensors": TEXT,
      "config.json": TEXT}, ["model-00001-of-00001.safetensors", "config.json"]),
    ({"consolidated.safetensors": TEXT, "config.json": TEXT}, "all"),
    ({"pytorch_model-00001-of-00002.bin": ZIP, "pytorch_model-00002-of-00002.bin": ZIP,
      "config.json": b'{"config": true}'}, "all"),
    ({"consolidated.00.pth": ZIP, "consolidated.01.pth": ZIP, "config.json": TEXT}, "all"),
    ({"model.gguf": BINARY, "config.json": TEXT}, "all"),
    ({"model.bin": BINARY, "config.json": TEXT}, "all"),
]  # fmt: skip


def write(folder: Path, files: dict[str, bytes]) -> Path:
    """The files (slash-separated path -> bytes) written under `folder`."""
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("files,expected", FILES_FOR_MODEL)
def test_files_for_model(tmp_path: Path, files: dict[str, bytes], expected: object) -> None:
    got = files_for_model(write(tmp_path, files))
    want = set(files) if expected == "all" else set(expected)  # type: ignore[arg-type]
    assert len(got) == len(want)
    assert {p.relative_to(tmp_path).as_posix() for p in got} == want


@pytest.mark.parametrize("files", [
    {"README.md": b"content", "config.json": b"content"},
    {"pytorch_model.bin": b"plain text content", "config.json": b"plain text content"},
])  # fmt: skip
def test_no_model_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        files_for_model(write(tmp_path, files))
    assert str(caught.value) == ERR_MODEL_NOT_FOUND


def test_a_json_that_is_not_text_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"model.gguf": BINARY, "config.json": BINARY})
    with pytest.raises(BuildError, match="invalid content type: expected application/octet"):
        files_for_model(tmp_path)


@pytest.mark.parametrize("data,kind", [
    (b"PK\x03\x04rest", "application/zip"), (GGUF, "application/octet-stream"),
    (b'{"a": 1}\n', "text/plain"), (b"\xef\xbb\xbf\x00", "text/plain"),
    (b"  <html>", "text/html"), (b"", "text/plain"),
])  # fmt: skip
def test_sniff_like_go(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


@pytest.mark.parametrize("key,pattern,hit", [
    ("model.safetensors", "model*.safetensors", True),
    ("2_Dense/model.safetensors", "model*.safetensors", False),
    ("2_Dense/model.safetensors", "*/model*.safetensors", True),
    ("a/b/model.safetensors", "*/model*.safetensors", False),
    ("Model.gguf", "*.gguf", True), ("model.GGUF", "*.gguf", False),
])  # fmt: skip
def test_patterns_stay_in_one_path_element(key: str, pattern: str, hit: bool) -> None:
    assert matches(key, pattern) is hit


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere", {"model.gguf": GGUF}) / "model.gguf"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.gguf").symlink_to(outside)
    with pytest.raises(BuildError, match=r"^insecure path: model\.gguf$"):
        files_for_directory(folder, None)


def test_a_text_file_named_gguf_is_reported_by_name(tmp_path: Path) -> None:
    """A git-lfs pointer left where the weights should be: the reference's folder scan
    would say "no Modelfile or safetensors files found"; the build names the file."""
    from toolchain.build import build_modelfile
    from toolchain.frontend import parse_modelfile
    from toolchain.store import Store, parse_name

    folder = write(tmp_path / "m", {"model.gguf": b"version https://git-lfs\n",
                                    "config.json": b"{}"})  # fmt: skip
    mf = parse_modelfile(f"FROM {folder}\n".encode(), str(tmp_path / "Modelfile"))
    with pytest.raises(BuildError, match=r"model\.gguf: not a GGUF file") as caught:
        build_modelfile(Store(tmp_path / "models"), parse_name("x"), mf)
    assert caught.value.span is not None and caught.value.span.line == 1
