"""The `mfc push/pull/export/import` commands, run as a user or CI would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.toolchain.registry.fault_proxy import FaultProxy
from tests.toolchain.registry.models import snapshot, store_model
from toolchain.registry.errors import RegistryError
from toolchain.registry.events import pull_events, push_events
from toolchain.store import Store

ROOT = Path(__file__).resolve().parents[3]


def mfc(*args: str, models: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFC_", "OLLAMA_"))}
    env["MFC_MODELS"] = str(models)
    return subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_build_push_rm_pull_with_the_commands(
    proxy: FaultProxy, store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    name = f"{proxy.host}/team/cli:v1"
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {small_gguf}\nSYSTEM From the CLI.\nPARAMETER top_k 7\n")
    built = mfc("build", str(modelfile), "-t", name, models=store.root)
    assert built.returncode == 0, built.stderr
    manifest = store.read_manifest(name)
    before = snapshot(store)

    pushed = mfc("push", name, "--insecure", "--json", models=store.root)
    assert pushed.returncode == 0, pushed.stderr
    events = _lines(pushed.stdout)
    assert events[0] == {"status": "retrieving manifest"}
    assert {"status": "success"} in events
    result = events[-1]
    assert result["digest"] == manifest.digest
    assert set(result["uploaded"]) == manifest.digests()  # type: ignore[arg-type]

    removed = mfc("rm", name, models=store.root)
    assert removed.returncode == 0, removed.stderr
    assert not store.names()

    pulled = mfc("pull", name, "--insecure", "--json", models=store.root)
    assert pulled.returncode == 0, pulled.stderr
    events = _lines(pulled.stdout)
    statuses = [e.get("status") for e in events[:-1]]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer_events = [
        e for e in events if str(e.get("status", "")).startswith("pulling ") and "digest" in e
    ]
    assert all(set(e) <= {"status", "digest", "total", "completed"} for e in layer_events)
    assert snapshot(store) == before

    again = mfc("push", name, "--insecure", models=store.root)
    assert again.returncode == 0, again.stderr
    assert "0 uploaded, 0 mounted, 4 already there" in again.stdout


def test_errors_are_diagnostics_not_tracebacks(proxy: FaultProxy, tmp_path: Path) -> None:
    models = tmp_path / "models"
    missing = mfc("pull", f"{proxy.host}/team/nope:v1", "--insecure", models=models)
    assert missing.returncode == 1
    assert "error: pull model manifest: file does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    as_json = mfc("pull", f"{proxy.host}/team/nope:v1", "--insecure", "--json", models=models)
    assert as_json.returncode == 1
    assert _lines(as_json.stdout) == [
        {"status": "pulling manifest"},
        {"error": "pull model manifest: file does not exist"},
    ]

    plain = mfc("pull", f"{proxy.host}/team/nope:v1", models=models)
    assert plain.returncode == 1
    assert "hint:" in plain.stderr and "--insecure" in plain.stderr

    bad = mfc("push", "bad name!", models=models)
    assert bad.returncode == 1 and "invalid model name" in bad.stderr

    local = mfc("push", "only-local:v1", models=models)
    assert local.returncode == 1 and "has no registry host to push to" in local.stderr

    absent = mfc("push", f"{proxy.host}/team/absent:v1", "--insecure", models=models)
    assert absent.returncode == 1 and "not found" in absent.stderr

    usage = mfc("export", "x", models=models)
    assert usage.returncode == 2  # -o is required


def test_export_import_commands(
    store: Store, other_store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    name = "example.com/team/tar:v1"
    manifest = store_model(store, name, small_gguf)
    tarball = tmp_path / "out" / "model.tar"
    exported = mfc("export", name, "-o", str(tarball), "--json", models=store.root)
    assert exported.returncode == 0, exported.stderr
    assert _lines(exported.stdout)[-1]["models"][0]["digest"] == manifest.digest  # type: ignore[index]
    imported = mfc("import", str(tarball), models=other_store.root)
    assert imported.returncode == 0, imported.stderr
    assert f"imported {name}" in imported.stdout
    assert other_store.read_manifest(name).digest == manifest.digest


def test_event_iterators_end_with_success_or_raise(
    proxy: FaultProxy, store: Store, other_store: Store, small_gguf: Path
) -> None:
    name = f"{proxy.host}/team/events:v1"
    store_model(store, name, small_gguf)
    pushed = [e.to_json() for e in push_events(name, insecure=True, store=store)]
    assert pushed[0] == {"status": "retrieving manifest"} and pushed[-1] == {"status": "success"}
    pulled = [e.to_json() for e in pull_events(name, insecure=True, store=other_store)]
    assert pulled[0] == {"status": "pulling manifest"} and pulled[-1] == {"status": "success"}

    seen = []
    with pytest.raises(RegistryError, match="file does not exist"):
        for event in pull_events(f"{proxy.host}/team/none:v1", insecure=True, store=other_store):
            seen.append(event.status)
    assert seen == ["pulling manifest"]
