"""`mfc build FROM ./dir` and `/api/create` with the folder's files uploaded read a folder
the same way: the same GGUF files, or the same decision to convert, or the same error.

The API side gets every file of the folder keyed by its path relative to the folder, as
the reference's CLI keys what it uploads; both sides go through `toolchain.build.sources`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fixtures.tiny_gguf import write_lora, write_tiny_model
from runtime import schemas
from runtime.api_create import create_request
from tests.toolchain.build.test_sources import write
from toolchain.build import CreateRequest, build, build_modelfile, request_from_modelfile
from toolchain.errors import MfcError
from toolchain.frontend import parse_modelfile
from toolchain.store import Store, parse_name

TEXT = b'{"architectures": ["LlamaForCausalLM"]}'
GGUF = b"GGUF\x03\x00\x00\x00" + bytes(24)
ZIP = b"PK\x03\x04" + bytes(8)

# (folder contents, what both sides must make of it: "convert", the GGUF keys, or an error)
FOLDERS: list[tuple[str, dict[str, bytes], object]] = [
    ("shards", {"model-00001-of-00002.safetensors": b"x", "model-00002-of-00002.safetensors":
                b"x", "config.json": TEXT, "tokenizer.json": TEXT, "chat_template.jinja": b"{{"},
     "convert"),
    ("sentence transformers", {"model.safetensors": b"x", "modules.json": TEXT,
                               "2_Dense/model.safetensors": b"x", "2_Dense/config.json": TEXT},
     "convert"),
    ("consolidated", {"consolidated.safetensors": b"x", "config.json": TEXT}, "convert"),
    ("odd safetensors name", {"weights.safetensors": b"x", "config.json": TEXT}, "convert"),
    ("safetensors beside a gguf", {"model.safetensors": b"x", "extra.gguf": GGUF}, "convert"),
    ("gguf with configs", {"model.gguf": GGUF, "config.json": TEXT,
                           "tokenizer.model": bytes(range(64))}, ["model.gguf"]),
    ("two ggufs", {"model.gguf": GGUF, "mmproj.gguf": GGUF, "README.md": b"hi"},
     ["mmproj.gguf", "model.gguf"]),
    ("gguf named .bin", {"model.bin": GGUF, "config.json": TEXT}, ["model.bin"]),
    ("gguf without a suffix", {"weights": GGUF, "README.md": b"hi"}, ["weights"]),
    ("text named .gguf (a git-lfs pointer)", {"model.gguf": b"version https://git-lfs\n",
                                             "config.json": TEXT}, ["model.gguf"]),
    ("gguf in a subfolder", {"q4/model-q4.gguf": GGUF, "README.md": b"hi"},
     ["q4/model-q4.gguf"]),
    ("tokenizer files only", {"tokenizer.json": TEXT, "tokenizer.model": bytes(range(64)),
                              "config.json": TEXT}, "no Modelfile or safetensors files found"),
    ("readme only", {"README.md": b"hi", "config.json": TEXT},
     "no Modelfile or safetensors files found"),
    ("pytorch", {"pytorch_model.bin": ZIP, "config.json": TEXT}, "holds PyTorch checkpoints"),
    ("pytorch as text", {"pytorch_model.bin": b"version https://git-lfs", "config.json": TEXT},
     "no Modelfile or safetensors files found"),
]  # fmt: skip

ADAPTERS: list[tuple[str, dict[str, bytes], object]] = [
    ("peft", {"adapter_model.safetensors": b"x", "adapter_config.json": TEXT}, "convert"),
    ("gguf lora", {"lora.gguf": GGUF}, ["lora.gguf"]),
    ("gguf lora with its config", {"lora.gguf": GGUF, "adapter_config.json": TEXT},
     ["lora.gguf"]),
]  # fmt: skip


def uploaded(store: Store, folder: Path) -> dict[str, str]:
    """Every file of the folder as a blob, keyed by its path relative to the folder."""
    return {
        p.relative_to(folder).as_posix(): store.blobs.write_bytes(p.read_bytes()).digest
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def reading(folder: Path, files: tuple[Path, ...], dirs: tuple[Path, ...]) -> object:
    """What a request makes of the folder: "convert", or the folder-relative GGUF paths."""
    if dirs:
        assert not files
        return "convert"
    return sorted(p.resolve().relative_to(folder.resolve()).as_posix() for p in files)


def build_side(tmp: Path, folder: Path, *, adapter: bool) -> object:
    text = f"FROM base\nADAPTER {folder}\n" if adapter else f"FROM {folder}\n"
    try:
        req = request_from_modelfile(parse_modelfile(text.encode(), "Modelfile"), relative_dir=tmp)
    except MfcError as exc:
        return exc.message.replace(str(folder), "<folder>")
    files, dirs = (req.adapters, req.adapter_dirs) if adapter else (req.files, req.convert_dirs)
    return reading(folder, tuple(f.path for f in files), tuple(d.path for d in dirs))


def api_side(store: Store, folder: Path, *, adapter: bool) -> object:
    blobs = uploaded(store, folder)
    if adapter:
        body = schemas.CreateRequest(from_="base", adapters=blobs)
    else:
        body = schemas.CreateRequest(files=blobs)
    try:
        req, temps = create_request(store, body)
    except MfcError as exc:
        where = "the request's adapters" if adapter else "the request's files"
        return exc.message.replace(where, "<folder>")
    try:
        files, dirs = (req.adapters, req.adapter_dirs) if adapter else (req.files, req.convert_dirs)
        if dirs:  # the converter's folder holds every uploaded file under its key
            linked = {p.relative_to(dirs[0].path).as_posix() for p in dirs[0].path.rglob("*")
                      if p.is_symlink()}  # fmt: skip
            assert linked == set(blobs)
            return "convert"
        assert all(f.path == store.blobs.path(blobs[f.key]) for f in files)
        return sorted(f.key for f in files)
    finally:
        for temp in temps:
            shutil.rmtree(temp)


@pytest.mark.parametrize("adapter,files,outcome", [
    *[pytest.param(False, files, outcome, id=name) for name, files, outcome in FOLDERS],
    *[pytest.param(True, files, outcome, id="adapter " + name)
      for name, files, outcome in ADAPTERS],
])  # fmt: skip
def test_build_and_api_read_a_folder_alike(
    tmp_path: Path, adapter: bool, files: dict[str, bytes], outcome: object
) -> None:
    folder = write(tmp_path / "model", files)
    store = Store(tmp_path / "models")
    by_build = build_side(tmp_path, folder, adapter=adapter)
    by_api = api_side(store, folder, adapter=adapter)
    assert by_build == by_api
    if isinstance(outcome, str) and outcome != "convert":
        assert isinstance(by_build, str) and outcome in by_build, by_build
    else:
        assert by_build == outcome


def test_a_gguf_folder_builds_to_the_same_manifest_both_ways(tmp_path: Path) -> None:
    """The reference's CLI uploads a GGUF folder's config.json too: the build must use the
    GGUF and the same layers come out as from `mfc build` (an API build used to try to
    convert the folder because of the JSON beside the weights)."""
    folder = tmp_path / "model"
    folder.mkdir()
    write_tiny_model(folder / "tiny.gguf")
    write_lora(folder / "unused-lora.bin", targets={"blk.0.attn_q.weight": (8, 8)}, rank=2)
    (folder / "config.json").write_bytes(TEXT)
    store = Store(tmp_path / "models")
    mf = parse_modelfile(f"FROM {folder}\n".encode(), "Modelfile")
    by_build = build_modelfile(store, parse_name("by-build"), mf, relative_dir=tmp_path)
    req, temps = create_request(store, schemas.CreateRequest(files=uploaded(store, folder)))
    assert temps == [] and isinstance(req, CreateRequest)
    by_api = build(store, parse_name("by-api"), req)
    assert by_api.digest == by_build.digest
    assert by_api.manifest.layers[0].from_ == "tiny.gguf"
