"""FROM/ADAPTER path resolution (spec §1.11): TestExpandPath and TestFilesForModel."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.frontend.paths import (
    ERR_MODEL_NOT_FOUND,
    ModelNotFoundError,
    PathError,
    expand_path,
    files_for_model,
    go_clean,
    go_getwd,
)

USERS = {"testuser": "/home/testuser", "anotheruser": "/home/anotheruser"}


def expand(path: str, relative_dir: str) -> str:
    return expand_path(path, relative_dir, home=lambda: "/home/testuser",
                       lookup_home=USERS.get)


@pytest.mark.parametrize("path,relative_dir,expected", [
    ("~", "", "/home/testuser"),
    ("~/myfolder/myfile.txt", "", "/home/testuser/myfolder/myfile.txt"),
    ("~anotheruser/docs/file.txt", "", "/home/anotheruser/docs/file.txt"),
    ("relative/path/to/file", "", "{pwd}/relative/path/to/file"),
    ("/absolute/path/to/file", "", "/absolute/path/to/file"),
    ("/absolute/path/to/file", "someotherdir/", "/absolute/path/to/file"),
    (".", "{pwd}", "{pwd}"),
    (".", "", "{pwd}"),
    ("somefile", "somedir", "{pwd}/somedir/somefile"),
    ("llama3:latest", ".", "{pwd}/llama3:latest"),
    ("//a/./b/../c/", "", "/a/c"),
])
def test_expand_path(path: str, relative_dir: str, expected: str) -> None:
    pwd = go_getwd()
    assert expand(path, relative_dir.format(pwd=pwd)) == expected.format(pwd=pwd)


def test_unknown_user() -> None:
    with pytest.raises(PathError) as caught:
        expand("~nonexistentuser/file.txt", "")
    assert str(caught.value).startswith("failed to find user 'nonexistentuser': ")


@pytest.mark.parametrize("path,clean", [
    ("", "."), ("a//b", "a/b"), ("/../x", "/x"), ("../../x", "../../x"), ("a/..", "."),
    ("/", "/"), ("a/b/../../..", ".."),
])
def test_go_clean(path: str, clean: str) -> None:
    assert go_clean(path) == clean


TEXT = b"test content"
BINARY = bytes(i % 256 for i in range(512))
ZIP = b"PK\x03\x04"

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
]


@pytest.mark.parametrize("files,expected", FILES_FOR_MODEL)
def test_files_for_model(tmp_path: Path, files: dict[str, bytes], expected: object) -> None:
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    got = files_for_model(str(tmp_path))
    want = set(files) if expected == "all" else set(expected)  # type: ignore[arg-type]
    assert len(got) == len(want)
    assert {str(Path(p).relative_to(tmp_path)) for p in got} == want


@pytest.mark.parametrize("files", [
    {"README.md": b"content", "config.json": b"content"},
    {"pytorch_model.bin": b"plain text content", "config.json": b"plain text content"},
])
def test_no_model_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ModelNotFoundError) as caught:
        files_for_model(str(tmp_path))
    assert str(caught.value) == ERR_MODEL_NOT_FOUND
