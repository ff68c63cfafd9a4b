"""`mfc build` FROM a model name with a registry host that is not in the store: the build
pulls it first, as the reference's create does (store_api.md §2.3), then inherits from it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.toolchain.registry.fault_proxy import FaultProxy
from tests.toolchain.registry.models import build_model, snapshot
from tests.toolchain.registry.test_cli import mfc
from toolchain.build import BuildError, CreateRequest, build
from toolchain.progress import ProgressEvent
from toolchain.registry.push import push_model
from toolchain.store import Manifest, Store, mediatypes, parse_name

BASE_MODELFILE = (
    'FROM {gguf}\nTEMPLATE "{{{{ .System }}}} {{{{ .Prompt }}}}"\nSYSTEM Be brief.\n'
    "PARAMETER temperature 0.5\nLICENSE MIT\n"
)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pushed_then_removed(proxy: FaultProxy, store: Store, gguf: Path, tmp: Path) -> Manifest:
    """A base model built, pushed to the registry, and removed from the store again."""
    name = f"{proxy.host}/team/base:v1"
    manifest = build_model(store, name, BASE_MODELFILE.format(gguf=gguf), tmp)
    push_model(name, store=store, insecure=True)
    store.delete(name)
    assert store.names() == [] and store.blobs.digests() == []
    proxy.clear()
    return manifest


def test_build_from_a_registry_name_pulls_it_then_builds_on_it(
    proxy: FaultProxy, store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    base = _pushed_then_removed(proxy, store, small_gguf, tmp_path)
    base_name = f"{proxy.host}/team/base:v1"
    folder = tmp_path / "derived"
    folder.mkdir()
    (folder / "Modelfile").write_text(f"FROM {base_name}\nSYSTEM Be verbose.\nPARAMETER top_k 7\n")
    derived_name = f"{proxy.host}/team/derived:v1"

    built = mfc(
        "build", str(folder / "Modelfile"), "-t", derived_name, "--insecure", "--json",
        models=store.root,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    lines = [json.loads(line) for line in built.stdout.splitlines()]
    result, events = lines[-1], lines[:-1]

    # the pull: its statuses (its own `success` too) come first, in the build's stream
    statuses = [e["status"] for e in events]
    assert statuses[:2] == ["parsing modelfile", "pulling manifest"]
    pull_end = statuses.index("success")
    assert statuses[pull_end - 2 : pull_end] == ["verifying sha256 digest", "writing manifest"]
    pulled = [
        s for s in statuses[:pull_end] if s.startswith("pulling ") and s != "pulling manifest"
    ]
    layers = [e for e in events[:pull_end] if "digest" in e]
    assert all(e["total"] == next(x.size for x in base.all_layers() if x.digest == e["digest"])
               for e in layers)  # fmt: skip
    assert list(dict.fromkeys(pulled)) == [f"pulling {x.digest[7:19]}" for x in base.all_layers()]
    # the pulled model is in the store with the registry's manifest bytes
    assert store.read_manifest(base_name).data == base.data

    # the build on top of it: the reference's layer rules (§1.8), stated here, not computed
    model, template, _system, license_, _params = base.layers
    assert [x.media_type for x in base.layers] == [
        mediatypes.MODEL, mediatypes.TEMPLATE, mediatypes.SYSTEM, mediatypes.LICENSE,
        mediatypes.PARAMS,
    ]  # fmt: skip
    new_system = b"Be verbose."
    new_params = b'{"temperature":0.5,"top_k":7}\n'
    inherited = [
        {"mediaType": x.media_type, "digest": x.digest, "size": x.size, "from": base_name}
        for x in (model, template, license_)
    ]
    expected = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        # the same GGUF and no new settings: the config blob is the base's
        "config": {"mediaType": mediatypes.CONFIG, "digest": base.config.digest,
                   "size": base.config.size},
        "layers": [
            *inherited,
            {"mediaType": mediatypes.SYSTEM, "digest": _sha(new_system), "size": len(new_system)},
            {"mediaType": mediatypes.PARAMS, "digest": _sha(new_params), "size": len(new_params)},
        ],
    }  # fmt: skip
    manifest = store.read_manifest(derived_name)
    assert manifest.data == json.dumps(expected, separators=(",", ":")).encode() + b"\n"
    assert statuses[pull_end + 1 :] == [
        f"using existing layer {model.digest}",
        f"using existing layer {template.digest}",
        f"using existing layer {license_.digest}",
        f"creating new layer {_sha(new_system)}",
        f"creating new layer {_sha(new_params)}",
        "writing manifest",
        "success",
    ]
    assert result["model"] == derived_name and result["digest"] == manifest.digest
    assert result["new_blobs"] == 2  # the pulled layers are reused: only SYSTEM and params
    assert set(store.blobs.digests()) == base.digests() | {_sha(new_system), _sha(new_params)}
    assert store.verify() == []
    # each blob crossed the network once, and a rebuild does not touch the registry
    blob_gets = [r.path for r in proxy.requests("GET") if "/blobs/sha256:" in r.path]
    assert sorted(p.rsplit("/", 1)[1] for p in blob_gets) == sorted(base.digests())
    proxy.clear()
    again = mfc("build", str(folder / "Modelfile"), "-t", derived_name, "--json",
                models=store.root)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["new_blobs"] == 0
    assert proxy.requests() == []


def test_without_insecure_a_plain_http_registry_is_refused_and_the_store_unchanged(
    proxy: FaultProxy, store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    _pushed_then_removed(proxy, store, small_gguf, tmp_path)
    before = snapshot(store)
    request = CreateRequest(from_model=f"{proxy.host}/team/base:v1", system="x")
    with pytest.raises(BuildError) as caught:
        build(store, parse_name(f"{proxy.host}/team/other:v1"), request)
    assert caught.value.message.startswith(f"cannot pull base model '{proxy.host}/team/base:v1'")
    assert caught.value.hint is not None and "--insecure" in caught.value.hint
    assert snapshot(store) == before


def test_a_name_the_registry_lacks_is_an_error_and_the_store_unchanged(
    proxy: FaultProxy, store: Store, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    request = CreateRequest(from_model=f"{proxy.host}/team/absent:v1")
    with pytest.raises(BuildError) as caught:
        build(store, parse_name("mine"), request, insecure=True, progress=events.append)
    assert caught.value.message == (
        f"cannot pull base model '{proxy.host}/team/absent:v1': "
        "pull model manifest: file does not exist"
    )
    assert [e.status for e in events] == ["pulling manifest"]
    assert not store.root.exists()
