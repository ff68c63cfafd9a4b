"""Push to and pull from a real registry (docker-registry on loopback), through a fault proxy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.toolchain.registry.fault_proxy import FaultProxy
from tests.toolchain.registry.models import build_model, snapshot, store_model
from toolchain.progress import ProgressEvent
from toolchain.registry.download import DownloadTuning
from toolchain.registry.errors import DigestMismatchError, RegistryError
from toolchain.registry.pull import pull_model
from toolchain.registry.push import push_model
from toolchain.store import Layer, Store, mediatypes


def _events() -> tuple[list[ProgressEvent], object]:
    events: list[ProgressEvent] = []
    return events, events.append


def _pushed_large(proxy: FaultProxy, store: Store, gguf: Path, repo: str) -> tuple[str, Layer]:
    """Store and push a model of the ~6 MB GGUF; returns its name and model layer."""
    name = f"{proxy.host}/team/{repo}:v1"
    manifest = store_model(store, name, gguf)
    push_model(name, store=store, insecure=True)
    proxy.clear()
    return name, manifest.layers_of(mediatypes.MODEL)[0]


def test_push_remove_pull_restores_the_store_byte_for_byte(
    proxy: FaultProxy, store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    name = f"{proxy.host}/team/tiny:v1"
    manifest = build_model(
        store,
        name,
        f'FROM {small_gguf}\nTEMPLATE "{{{{ .System }}}} {{{{ .Prompt }}}}"\n'
        "SYSTEM You are tiny.\nPARAMETER temperature 0.5\nLICENSE MIT\n",
        tmp_path,
    )
    assert len(manifest.layers) == 5
    before = snapshot(store)

    events, on_event = _events()
    pushed = push_model(name, store=store, insecure=True, progress=on_event)  # type: ignore[arg-type]
    assert pushed.digest == manifest.digest
    assert set(pushed.uploaded) == manifest.digests()
    statuses = [e.status for e in events]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    for layer in manifest.all_layers():
        mine = [e for e in events if e.digest == layer.digest]
        assert mine[0].status == f"pushing {layer.digest[7:19]}"
        assert mine[-1].completed == mine[-1].total == layer.size
    assert proxy.requests("PATCH"), "blobs are uploaded in chunks"
    assert len(proxy.requests("PUT", "/manifests/v1")) == 1

    store.delete(name)
    assert not list((store.root / "blobs").iterdir())

    events.clear()
    pulled = pull_model(name, store=store, insecure=True, progress=on_event)  # type: ignore[arg-type]
    assert pulled.digest == manifest.digest
    assert snapshot(store) == before
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    pulling = [s for s in statuses if s.startswith("pulling ") and s != "pulling manifest"]
    order = list(dict.fromkeys(pulling))
    assert order == [f"pulling {layer.digest[7:19]}" for layer in manifest.all_layers()]


def test_second_push_uploads_nothing_and_second_pull_downloads_nothing(
    proxy: FaultProxy, store: Store, small_gguf: Path
) -> None:
    name = f"{proxy.host}/team/again:v1"
    manifest = store_model(store, name, small_gguf)
    push_model(name, store=store, insecure=True)
    proxy.clear()
    again = push_model(name, store=store, insecure=True)
    assert again.uploaded == () and again.mounted == ()
    assert set(again.existing) == manifest.digests()
    assert not proxy.requests("POST") and not proxy.requests("PATCH")
    assert not proxy.requests(contains="/blobs/uploads/")

    proxy.clear()
    pulled = pull_model(name, store=store, insecure=True)
    assert pulled.downloaded == () and set(pulled.cached) == manifest.digests()
    assert not [r for r in proxy.requests("GET") if "/blobs/" in r.path]


def test_push_of_a_model_built_from_a_pushed_one_mounts_the_shared_blobs(
    proxy: FaultProxy, store: Store, small_gguf: Path, tmp_path: Path
) -> None:
    base_name = f"{proxy.host}/team/base:v1"
    base = build_model(store, base_name, f"FROM {small_gguf}\nSYSTEM Base.\n", tmp_path)
    push_model(base_name, store=store, insecure=True)
    derived_name = f"{proxy.host}/team/derived:v1"
    derived = build_model(store, derived_name, f"FROM {base_name}\nSYSTEM Derived.\n", tmp_path)
    inherited = [layer for layer in derived.layers if layer.from_]
    assert inherited and {layer.from_ for layer in inherited} == {base_name}

    proxy.clear()
    result = push_model(derived_name, store=store, insecure=True)
    shared = {layer.digest for layer in derived.all_layers()} & base.digests()
    assert {layer.digest for layer in inherited} <= shared
    assert set(result.mounted) == shared  # the config too: it is the same blob
    system = derived.layers_of(mediatypes.SYSTEM)[0].digest
    assert result.uploaded == (system,)
    mounts = proxy.requests("POST", "mount=")
    assert all("from=team%2Fbase" in r.query for r in mounts)
    assert sorted(r.status for r in mounts) == [201] * len(shared) + [202]  # system: not there
    # the mounted blobs were never sent again
    assert len(proxy.requests("PUT", "digest=")) == 1
    assert len(proxy.requests("PATCH")) == 1


def test_interrupted_pull_resumes_without_refetching_completed_ranges(
    proxy: FaultProxy, store: Store, other_store: Store, large_gguf: Path
) -> None:
    name = f"{proxy.host}/team/resume:v1"
    manifest = store_model(store, name, large_gguf)
    push_model(name, store=store, insecure=True)
    model = manifest.layers_of(mediatypes.MODEL)[0]
    cut_at = 2_500_000  # inside the third 1 MB range
    proxy.clear()
    proxy.cut(model.digest, cut_at)

    tuning = DownloadTuning(min_part=1_000_000, parallel=3, backoff=0.01)
    pulled = pull_model(name, store=other_store, insecure=True, tuning=tuning)

    assert model.digest in pulled.downloaded
    assert other_store.blobs.verify(model.digest)
    gets = [r for r in proxy.requests("GET") if r.path.endswith(model.digest)]
    ranges = [r.range for r in gets]
    assert ranges.count("bytes=2000000-2999999") == 1  # the range that was cut
    assert "bytes=2500000-2999999" in ranges  # retried from where it stopped
    assert sum(r.sent for r in gets) == model.size  # not one byte fetched twice


def test_pull_killed_midway_resumes_in_the_next_run(
    proxy: FaultProxy, store: Store, other_store: Store, large_gguf: Path
) -> None:
    name, model = _pushed_large(proxy, store, large_gguf, "resume2")
    proxy.cut(model.digest, 1_700_000, times=1000)  # the link keeps dying at 1.7 MB
    tuning = DownloadTuning(min_part=1_000_000, parallel=2, retries=1, backoff=0.0)

    with pytest.raises(RegistryError, match="run the pull again to resume"):
        pull_model(name, store=other_store, insecure=True, tuning=tuning)
    assert not other_store.exists(other_store.resolve(name))
    blob = other_store.blobs.path(model.digest)
    assert not blob.exists()
    assert blob.with_name(blob.name + "-partial").exists()
    raw = [p.read_bytes() for p in blob.parent.glob(blob.name + "-partial-*")]
    states = [json.loads(data) for data in raw]
    # the reference's part files: Go's json.Marshal of {N, Offset, Size, Completed}
    assert sorted(raw) == sorted(
        f'{{"N":{s["N"]},"Offset":{s["Offset"]},"Size":{s["Size"]},"Completed":{s["Completed"]}}}'.encode()
        for s in states
    )
    kept = {s["Offset"]: s["Completed"] for s in states}
    assert kept[1_000_000] == 700_000  # the cut range kept what arrived before the cut

    proxy.clear()
    pull_model(name, store=other_store, insecure=True, tuning=tuning)
    second = [r for r in proxy.requests("GET") if r.path.endswith(model.digest)]
    assert other_store.blobs.verify(model.digest)
    assert sum(r.sent for r in second) == model.size - sum(kept.values())
    expected = {
        f"bytes={offset + done}-{min(offset + 1_000_000, model.size) - 1}"
        for offset, done in kept.items()
        if done < min(1_000_000, model.size - offset)
    }
    assert {r.range for r in second} == expected
    assert not list(blob.parent.glob("*-partial*"))


def test_altered_blob_is_rejected_and_nothing_corrupt_is_left(
    proxy: FaultProxy, store: Store, other_store: Store, large_gguf: Path
) -> None:
    name, model = _pushed_large(proxy, store, large_gguf, "corrupt")
    proxy.flip(model.digest, 3_141_592)

    with pytest.raises(DigestMismatchError) as caught:
        pull_model(name, store=other_store, insecure=True)
    assert caught.value.want == model.digest
    assert "digest mismatch, file must be downloaded again" in str(caught.value)
    blobs = other_store.root / "blobs"
    leftovers = [p.name for p in blobs.iterdir()] if blobs.exists() else []
    assert not [n for n in leftovers if model.digest[7:] in n]
    assert not other_store.names()
    assert other_store.verify() == []

    # the registry itself is fine: a clean pull works
    pull_model(name, store=other_store, insecure=True)
    assert other_store.blobs.verify(model.digest)


def test_busy_registry_and_ignored_ranges_are_survived(
    proxy: FaultProxy, store: Store, other_store: Store, large_gguf: Path
) -> None:
    name, model = _pushed_large(proxy, store, large_gguf, "busy")
    proxy.fail(model.digest, 503, times=2)
    proxy.strip_range = True  # every range request gets the whole blob back (200)
    tuning = DownloadTuning(min_part=2_000_000, parallel=2, backoff=0.01)
    pull_model(name, store=other_store, insecure=True, tuning=tuning)
    assert other_store.blobs.verify(model.digest)
    statuses = [r.status for r in proxy.requests("GET") if r.path.endswith(model.digest)]
    assert statuses.count(503) == 2 and 200 in statuses


def test_pull_of_an_unknown_tag_says_so(proxy: FaultProxy, store: Store) -> None:
    with pytest.raises(RegistryError, match="file does not exist") as caught:
        pull_model(f"{proxy.host}/team/nothing:v9", store=store, insecure=True)
    assert caught.value.hint and "team/nothing" in caught.value.hint
    assert not store.names()


def test_plain_http_needs_insecure(proxy: FaultProxy, store: Store) -> None:
    with pytest.raises(RegistryError, match="insecure protocol http"):
        pull_model(f"http://{proxy.host}/team/x:v1", store=store)
    with pytest.raises(RegistryError) as caught:
        pull_model(f"{proxy.host}/team/x:v1", store=store)
    assert caught.value.hint and "--insecure" in caught.value.hint


def test_push_of_a_missing_model(proxy: FaultProxy, store: Store) -> None:
    events, on_event = _events()
    with pytest.raises(Exception, match="not found"):
        push_model(f"{proxy.host}/team/absent:v1", store=store, insecure=True, progress=on_event)  # type: ignore[arg-type]
    assert [e.status for e in events] == ["retrieving manifest", "couldn't retrieve manifest"]


def test_pulling_a_new_version_removes_blobs_only_the_old_one_used(
    proxy: FaultProxy, store: Store, other_store: Store, small_gguf: Path
) -> None:
    name = f"{proxy.host}/team/versions:v1"
    old = store_model(store, name, small_gguf, system="Version one.")
    push_model(name, store=store, insecure=True)
    pull_model(name, store=other_store, insecure=True)
    new = store_model(store, name, small_gguf, system="Version two.")
    push_model(name, store=store, insecure=True)

    events: list[ProgressEvent] = []
    result = pull_model(name, store=other_store, insecure=True, progress=events.append)
    old_system = old.layers_of(mediatypes.SYSTEM)[0].digest
    assert result.removed == (old_system,)
    assert "removing unused layers" in [e.status for e in events]
    assert not other_store.blobs.exists(old_system)
    assert other_store.read_manifest(name).digest == new.digest
    assert set(result.cached) == new.digests() - {new.layers_of(mediatypes.SYSTEM)[0].digest}
