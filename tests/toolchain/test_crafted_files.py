"""Crafted inputs get a one-line error and exit 1, never a traceback, and leave nothing.

Each is run as a user would, through the `mfc` command in a subprocess: GGUF arrays nested
2000 deep (`build`, `inspect`, `quantize`, `convert --lora-base`), a `config.json` or a
safetensors header nested 100 000 deep (`convert`), a registry manifest naming a layer of
10^15 bytes (`pull`).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fixtures.local_server import ROOT, mfc_command
from fixtures.tiny_gguf import write_tiny_model

DEEP = 2000


def mfc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mfc_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def assert_clean_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and needle in errors[0], done.stderr


def gguf_string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def nested_array_gguf(path: Path, depth: int = DEEP) -> Path:
    """A GGUF v3 whose one key holds an array of arrays ... `depth` deep, no tensors."""
    kv = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    value = struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 4, 0)
    kv += gguf_string("deep.array") + struct.pack("<I", 9) + value
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv)
    return path


def test_nested_gguf_arrays(tmp_path: Path, tiny_models_dir: Path) -> None:
    deep = nested_array_gguf(tmp_path / "deep.gguf")
    assert_clean_error(mfc("inspect", str(deep)), "nested more than")
    store = tmp_path / "models"
    (tmp_path / "Modelfile").write_text(f"FROM {deep}\n")
    assert_clean_error(
        mfc("build", str(tmp_path / "Modelfile"), "-t", "x", "--models", str(store)),
        "nested more than",
    )
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
    out = tmp_path / "out"
    out.mkdir()
    assert_clean_error(mfc("quantize", str(deep), str(out / "q.gguf"), "q8_0"), "nested more than")
    assert_clean_error(
        mfc(
            "convert",
            str(tiny_models_dir / "tiny-llama-lora"),
            str(out / "lora.gguf"),
            "--lora-base",
            str(deep),
        ),
        "nested more than",
    )
    assert list(out.iterdir()) == []


def test_nested_arrays_within_the_limit_still_read(tmp_path: Path) -> None:
    from quant.gguf_read import GGUFFile
    from toolchain.store.gguf_reader import read_gguf

    ok = nested_array_gguf(tmp_path / "ok.gguf", depth=8)
    assert read_gguf(ok).kv["general.architecture"] == "llama"
    with GGUFFile(ok) as g:
        assert g.get("general.architecture") == "llama"


@pytest.fixture
def hf_copy(tmp_path: Path, tiny_models_dir: Path) -> Path:
    d = tmp_path / "hf"
    shutil.copytree(tiny_models_dir / "tiny-llama", d)
    return d


def test_config_json_nested_100k_deep(tmp_path: Path, hf_copy: Path) -> None:
    (hf_copy / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "out"
    out.mkdir()
    assert_clean_error(mfc("convert", str(hf_copy), str(out / "m.gguf")), "nested too deep")
    assert list(out.iterdir()) == []


def test_safetensors_header_nested_100k_deep(tmp_path: Path, hf_copy: Path) -> None:
    header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (hf_copy / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    out = tmp_path / "out"
    out.mkdir()
    assert_clean_error(mfc("convert", str(hf_copy), str(out / "m.gguf")), "nested too deep")
    assert list(out.iterdir()) == []


# -- a registry whose manifest names a 10^15-byte layer ----------------------------------

HUGE = 10**15


@pytest.fixture
def lying_registry(tmp_path: Path) -> Iterator[str]:
    gguf = tmp_path / "small.gguf"
    write_tiny_model(gguf)
    config = b"{}"
    import hashlib

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.ollama.image.model",
                    "digest": "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest(),
                    "size": HUGE,
                }
            ],
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v2/":
                self._answer(200, b"{}", "application/json")
            elif "/manifests/" in self.path:
                self._answer(200, manifest, "application/vnd.docker.distribution.manifest.v2+json")
            else:
                self._answer(404, b"{}", "application/json")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _answer(self, code: int, body: bytes, media_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_pull_of_a_layer_larger_than_the_disk(tmp_path: Path, lying_registry: str) -> None:
    store = tmp_path / "models"
    done = mfc(
        "pull", "--insecure", f"{lying_registry}/library/huge:latest", "--models", str(store)
    )
    assert_clean_error(done, "not enough disk space")
    left = [p.name for p in store.rglob("*") if p.is_file()] if store.exists() else []
    assert left == []


# -- inputs that are not regular files ---------------------------------------------------


def test_fifos_and_devices_are_refused(tmp_path: Path, hf_copy: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    (tmp_path / "Modelfile").write_text("FROM ./model.gguf\n")
    out = tmp_path / "out"
    out.mkdir()
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device")):
        want = f"{path}: not a regular file ({kind})"
        assert_clean_error(mfc("inspect", str(path)), want)
        assert_clean_error(mfc("quantize", str(path), str(out / "q.gguf"), "q8_0"), want)
    assert_clean_error(
        mfc("build", str(tmp_path / "Modelfile"), "-t", "x", "--models", str(tmp_path / "models")),
        "not a regular file (a FIFO)",
    )
    (hf_copy / "model.safetensors").unlink()
    os.mkfifo(hf_copy / "model.safetensors")
    assert_clean_error(
        mfc("convert", str(hf_copy), str(out / "m.gguf")),
        "model.safetensors: not a regular file (a FIFO)",
    )
    assert list(out.iterdir()) == []
