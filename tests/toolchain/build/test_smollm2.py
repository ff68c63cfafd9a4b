"""The demo model, built from a Modelfile with every instruction, against the spec's manifest.

The expected manifest is written out here from store_api.md §1.4-§1.8 and
modelfile_template.md §1.8-§1.9: layer media types and order, `from` of file layers, the
exact bytes of each text/JSON blob and of the config blob, and their digests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toolchain.build import build_modelfile
from toolchain.frontend.parse import load_modelfile
from toolchain.store import Store, parse_name

TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
MODELFILE = '''\
# every instruction the reference's create request carries
FROM {gguf}
ADAPTER ./smollm2-lora.gguf
TEMPLATE """{template}"""
SYSTEM """You are SmolLM, a helpful assistant.
Answer briefly."""
PARAMETER temperature 0.7
PARAMETER top_k 20
PARAMETER num_ctx 4096
PARAMETER stop "<|im_end|>"
PARAMETER seed 42
PARAMETER stop "<|im_start|>"
PARAMETER repeat_penalty 1.1
PARAMETER use_mmap true
MESSAGE user Hello
MESSAGE assistant Hi! How can I help?
LICENSE """Apache License
Version 2.0, January 2004"""
LICENSE MIT
'''

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
IMAGE = "application/vnd.ollama.image."


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, smollm2_lora_gguf: Path
) -> Path:
    d = tmp_path_factory.mktemp("smollm2") / "smollm2-chat"
    d.mkdir()
    shutil.copy(smollm2_lora_gguf, d / "smollm2-lora.gguf")
    (d / "Modelfile").write_text(MODELFILE.format(gguf=smollm2_gguf, template=TEMPLATE))
    return d


def expected_manifest(smollm2_gguf: Path, lora: Path) -> bytes:
    params = (
        b'{"num_ctx":4096,"repeat_penalty":1.1,"seed":42,'
        b'"stop":["\\u003c|im_end|\\u003e","\\u003c|im_start|\\u003e"],'
        b'"temperature":0.7,"top_k":20,"use_mmap":true}\n'
    )
    messages = (
        b'[{"role":"user","content":"Hello"},'
        b'{"role":"assistant","content":"Hi! How can I help?"}]\n'
    )
    # SmolLM2-135M: llama, 134,515,008 tensor elements, general.file_type 3 (Q4_1)
    config = (
        b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
        b'"model_type":"134.52M","file_type":"Q4_1","architecture":"amd64","os":"linux"}\n'
    )

    def text(kind: str, data: bytes) -> dict[str, object]:
        return {"mediaType": IMAGE + kind, "digest": sha(data), "size": len(data)}

    layers = [
        {
            "mediaType": IMAGE + "model",
            "digest": file_sha(smollm2_gguf),
            "size": smollm2_gguf.stat().st_size,
            "from": "SmolLM2-135M-Instruct.Q4_1.gguf",
        },
        {
            "mediaType": IMAGE + "adapter",
            "digest": file_sha(lora),
            "size": lora.stat().st_size,
            "from": "smollm2-lora.gguf",
        },
        text("template", TEMPLATE.encode()),
        text("system", b"You are SmolLM, a helpful assistant.\nAnswer briefly."),
        text("license", b"Apache License\nVersion 2.0, January 2004"),
        text("license", b"MIT"),
        text("params", params),
        text("messages", messages),
    ]
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha(config), "size": len(config)},
        "layers": layers,
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def test_smollm2_manifest_is_the_references(
    project: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    store = Store(tmp_path / "models")
    result = build_modelfile(
        store, parse_name("smollm2-chat"), load_modelfile(project / "Modelfile")
    )
    expected = expected_manifest(smollm2_gguf, project / "smollm2-lora.gguf")
    on_disk = store.manifest_path(parse_name("smollm2-chat")).read_bytes()
    assert on_disk == expected
    assert result.digest == hashlib.sha256(expected).hexdigest()
    # every blob is there with the bytes its digest names
    assert store.verify() == []
    assert len(store.blobs.digests()) == 9  # 8 layers + config


def mfc(*args: str, store: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolchain.cli import main; main()",
            *args,
            "--models",
            str(store),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=300,
    )


def test_cli_build_show_modelfile_round_trip(project: Path, tmp_path: Path) -> None:
    """`mfc build` names the model after its folder; `mfc show --modelfile` rebuilds it
    to the same manifest digest, writing no blob."""
    store = tmp_path / "models"
    first = mfc("build", str(project / "Modelfile"), "--json", store=store)
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert lines[0] == {"status": "parsing modelfile"}
    assert {"status": "writing manifest"} in lines and {"status": "success"} in lines
    result = lines[-1]
    assert result["model"] == "smollm2-chat:latest"

    shown = mfc("show", "smollm2-chat", "--modelfile", store=store)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith('# Modelfile generated by "ollama show"\n')
    rebuilt_dir = tmp_path / "again"
    rebuilt_dir.mkdir()
    (rebuilt_dir / "Modelfile").write_text(shown.stdout)
    blobs = sorted(p.name for p in (store / "blobs").iterdir())
    second = mfc("build", "-f", str(rebuilt_dir / "Modelfile"), "-t", "copy", "--json", store=store)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout.splitlines()[-1])
    assert again["digest"] == result["digest"]
    assert again["new_blobs"] == 0
    assert sorted(p.name for p in (store / "blobs").iterdir()) == blobs
