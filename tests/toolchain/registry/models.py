"""Small models for the distribution tests: a tiny GGUF made with gguf-py, stored as a model.

`store_model` writes what a build of `FROM tiny.gguf` + TEMPLATE (+ SYSTEM) gives: a model
layer, a template layer, an optional system layer and the config blob, through the store's
own API (blobs, `Manifest`, `ModelConfig`), so the bytes are the store's encodings.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np

from toolchain.store import (
    Layer,
    Manifest,
    ModelName,
    Store,
    digest_of_file,
    mediatypes,
    parse_name,
)
from toolchain.store.config import ModelConfig


def tiny_gguf(path: Path, megabytes: float, seed: int = 0) -> Path:
    """A valid GGUF (arch `llama`, F32 tensors of seeded noise) of about `megabytes` MB."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_head_count(2)
    n = max(1, int(megabytes * 1_000_000 / 4 / 4096))
    writer.add_tensor("token_embd.weight", rng.standard_normal((n, 4096), dtype=np.float32))
    writer.add_tensor("output_norm.weight", rng.standard_normal(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def store_model(
    store: Store,
    name: str,
    gguf_path: Path,
    *,
    system: str | None = None,
    base: ModelName | None = None,
) -> Manifest:
    """Store a model; with `base`, its layers are inherited `from` that model (a FROM build)."""
    target = store.resolve(name)
    if base is not None:
        inherited = store.read_manifest(base)
        layers = [
            Layer(layer.media_type, layer.digest, layer.size, from_=base.display())
            for layer in inherited.layers
        ]
    else:
        digest = digest_of_file(gguf_path)
        store.blobs.import_file(gguf_path, digest)
        template = store.blobs.write_bytes(b"{{ .System }}\n{{ .Prompt }}")
        layers = [
            Layer(mediatypes.MODEL, digest, gguf_path.stat().st_size, from_=gguf_path.name),
            Layer(mediatypes.TEMPLATE, template.digest, template.size),
        ]
    if system is not None:
        written = store.blobs.write_bytes(system.encode())
        layers = [layer for layer in layers if layer.media_type != mediatypes.SYSTEM]
        layers.append(Layer(mediatypes.SYSTEM, written.digest, written.size))
    config = ModelConfig(
        model_format="gguf",
        model_family="llama",
        model_families=("llama",),
        model_type="0",
        file_type="F32",
    ).encode()
    config_blob = store.blobs.write_bytes(config)
    manifest = Manifest(
        config=Layer(mediatypes.CONFIG, config_blob.digest, config_blob.size), layers=tuple(layers)
    )
    store.write_manifest(target, manifest)
    return store.read_manifest(target)


def build_model(store: Store, name: str, modelfile: str, folder: Path) -> Manifest:
    """Build a Modelfile with mfc's compiler (`mfc build`'s library entry) into `store`."""
    from toolchain.build import build_modelfile
    from toolchain.frontend.parse import parse_modelfile

    path = folder / f"Modelfile.{abs(hash(name))}"
    path.write_text(modelfile)
    parsed = parse_modelfile(path.read_bytes(), str(path))
    build_modelfile(store, parse_name(name), parsed, relative_dir=folder)
    return store.read_manifest(name)


def snapshot(store: Store) -> dict[str, str]:
    """Every file under blobs/ and manifests/ -> sha256 of its bytes (temp area excluded)."""
    out = {}
    for top in ("blobs", "manifests"):
        base = store.root / top
        for path in sorted(base.rglob("*")):
            if path.is_file():
                rel = path.relative_to(store.root).as_posix()
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
