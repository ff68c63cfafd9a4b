"""Layer order, merge rules and GC of `build`, stated from store_api.md §1.8-§1.9.

Expected manifests are written out from the spec's rules (media types, order, `from`,
digests of the expected blob bytes), never by calling our own writer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fixtures.tiny_gguf import write_tiny_model
from toolchain.build import BuildError, CreateRequest, SourceFile, build
from toolchain.progress import ProgressEvent
from toolchain.prompt import named_template
from toolchain.store import Store, parse_name

MODEL = "application/vnd.ollama.image.model"
ADAPTER = "application/vnd.ollama.image.adapter"
TEMPLATE = "application/vnd.ollama.image.template"
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
MESSAGES = "application/vnd.ollama.image.messages"
LICENSE = "application/vnd.ollama.image.license"
CONFIG = "application/vnd.docker.container.image.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(media_type: str, data: bytes, **extra: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


def manifest_bytes(config: bytes, layers: list[dict[str, object]]) -> bytes:
    """The manifest per spec §1.4: compact JSON in struct order, trailing newline."""
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": CONFIG, "digest": sha(config), "size": len(config)},
        "layers": layers,
    }
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def tiny_config(file_type: str = "F16") -> bytes:
    # tiny.gguf: llama, 16x8 + 8x8 + 8 = 200 parameters
    return (
        '{"model_format":"gguf","model_family":"llama","model_families":["llama"],'
        f'"model_type":"200","file_type":"{file_type}","architecture":"amd64","os":"linux"}}\n'
    ).encode()


def read(store: Store, name: str) -> bytes:
    return store.manifest_path(parse_name(name)).read_bytes()


def test_files_with_every_instruction(store: Store, tiny_dir: Path) -> None:
    request = CreateRequest(
        files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),),
        adapters=(SourceFile("lora.gguf", tiny_dir / "lora.gguf"),),
        template="{{ .System }} {{ .Prompt }}",
        system="Say hi!",
        licenses=("MIT", "Apache-2.0"),
        parameters={"temperature": 1.0, "top_k": 10.0, "stop": ["USER:", "ASSISTANT:"]},
        messages=(
            ("assistant", "What is my purpose?"),
            ("user", "You run tests."),
            ("assistant", "Oh, my god."),
        ),
    )
    events: list[ProgressEvent] = []
    result = build(store, parse_name("tiny"), request, progress=events.append)
    params = b'{"stop":["USER:","ASSISTANT:"],"temperature":1,"top_k":10}\n'
    messages = (
        b'[{"role":"assistant","content":"What is my purpose?"},{"role":"user","content":'
        b'"You run tests."},{"role":"assistant","content":"Oh, my god."}]\n'
    )
    expected = manifest_bytes(
        tiny_config(),
        [
            layer(MODEL, (tiny_dir / "tiny.gguf").read_bytes(), **{"from": "tiny.gguf"}),
            layer(ADAPTER, (tiny_dir / "lora.gguf").read_bytes(), **{"from": "lora.gguf"}),
            layer(TEMPLATE, b"{{ .System }} {{ .Prompt }}"),
            layer(SYSTEM, b"Say hi!"),
            layer(LICENSE, b"MIT"),
            layer(LICENSE, b"Apache-2.0"),
            layer(PARAMS, params),
            layer(MESSAGES, messages),
        ],
    )
    assert read(store, "tiny") == expected
    assert result.digest == hashlib.sha256(expected).hexdigest()
    # spec digests of the same bytes (§5)
    assert sha(params).endswith("1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37")
    assert sha(messages).endswith(
        "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"
    )
    statuses = [e.status for e in events if e.total is None]
    assert statuses[:2] == ["parsing GGUF", "parsing GGUF"]
    assert statuses[-2:] == ["writing manifest", "success"]
    layer_statuses = [
        s for s in statuses if s.startswith(("creating new layer", "using existing layer"))
    ]
    assert len(layer_statuses) == 8
    assert all(s.startswith("creating new layer sha256:") for s in layer_statuses)
    assert store.verify() == []


def test_rebuild_is_identical_and_writes_nothing(store: Store, tiny_dir: Path) -> None:
    request = CreateRequest(files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),), system="x")
    first = build(store, parse_name("tiny"), request)
    blobs_before = sorted(p.name for p in (store.root / "blobs").iterdir())
    events: list[ProgressEvent] = []
    second = build(store, parse_name("tiny"), request, progress=events.append)
    assert second.digest == first.digest
    assert second.new_blobs == () and second.removed_blobs == ()
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == blobs_before
    assert not any(e.status.startswith("creating new layer") for e in events)


def test_from_model_replaces_accumulates_merges(store: Store, tiny_dir: Path) -> None:
    base = CreateRequest(
        files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),),
        adapters=(SourceFile("lora.gguf", tiny_dir / "lora.gguf"),),
        template="{{ .Prompt }}",
        system="Say hi!",
        licenses=("MIT",),
        parameters={"temperature": 1.0, "top_k": 10.0, "stop": ["USER:", "ASSISTANT:"]},
        messages=(("user", "hello"),),
    )
    build(store, parse_name("base"), base)
    base_manifest = json.loads(read(store, "base"))
    child = CreateRequest(
        from_model="base",
        system="Say bye!",
        licenses=("Apache-2.0",),
        parameters={"temperature": 0.6, "top_p": 0.7},
    )
    events: list[ProgressEvent] = []
    build(store, parse_name("child"), child, progress=events.append)
    inherited = {(x["mediaType"], x["digest"]): x for x in base_manifest["layers"]}

    def inherit(media_type: str, data: bytes) -> dict[str, object]:
        assert (media_type, sha(data)) in inherited
        return layer(media_type, data, **{"from": "base:latest"})

    model = (tiny_dir / "tiny.gguf").read_bytes()
    merged = b'{"stop":["USER:","ASSISTANT:"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    expected = manifest_bytes(
        tiny_config(),
        [
            {**inherit(MODEL, model)},
            inherit(ADAPTER, (tiny_dir / "lora.gguf").read_bytes()),
            inherit(TEMPLATE, b"{{ .Prompt }}"),
            inherit(LICENSE, b"MIT"),  # licenses accumulate
            inherit(MESSAGES, b'[{"role":"user","content":"hello"}]\n'),  # no MESSAGE: kept
            layer(SYSTEM, b"Say bye!"),  # SYSTEM replaces
            layer(LICENSE, b"Apache-2.0"),
            layer(PARAMS, merged),  # request wins, lists replaced, params layer moves last
        ],
    )
    assert read(store, "child") == expected
    assert sha(merged).endswith("e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba")
    using = [e.status for e in events if e.status.startswith("using existing layer")]
    assert len(using) == 5
    # a list in the request replaces the inherited one
    build(
        store,
        parse_name("child2"),
        CreateRequest(from_model="child", parameters={"stop": ["<|endoftext|>"]}),
    )
    params = json.loads(read(store, "child2"))["layers"][-1]
    assert params["mediaType"] == PARAMS
    assert (
        params["digest"]
        == "sha256:12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"
    )


def test_from_model_is_case_insensitive_and_inherits_renderer(store: Store, tiny_dir: Path) -> None:
    build(
        store,
        parse_name("Base"),
        CreateRequest(
            files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),), renderer="r1", parser="p1"
        ),
    )
    build(store, parse_name("kid"), CreateRequest(from_model="BASE:LATEST"))
    config_digest = json.loads(read(store, "kid"))["config"]["digest"]
    config = json.loads(store.blobs.read_bytes(config_digest))
    assert (config["renderer"], config["parser"]) == ("r1", "p1")
    assert json.loads(read(store, "kid"))["layers"][0]["from"] == "Base:latest"


@pytest.mark.parametrize("name", ["llama3.2", "registry.ollama.ai/library/llama3.2:latest"])
def test_unknown_base_without_a_registry_host_is_not_pulled(
    store: Store, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import toolchain.registry

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("pulled from ollama.com")

    monkeypatch.setattr(toolchain.registry, "pull_model", no_network)
    with pytest.raises(BuildError) as caught:
        build(store, parse_name("kid"), CreateRequest(from_model=name))
    assert caught.value.message == (
        f"base model 'llama3.2:latest' not found in {store.root}, and no such file"
    )
    assert caught.value.hint is not None and "registry host" in caught.value.hint
    assert not store.root.exists()


def test_delete_gc_scenarios(store: Store, tiny_dir: Path) -> None:
    """TestDelete: two models sharing blobs; deleting both empties blobs/."""
    # other.gguf has no chat template, like the reference test's GGUF
    files = (SourceFile("other.gguf", tiny_dir / "other.gguf"),)
    build(store, parse_name("test"), CreateRequest(files=files))
    build(
        store,
        parse_name("test2"),
        CreateRequest(files=files, template="{{ .System }} {{ .Prompt }}"),
    )
    all_blobs = set(store.blobs.digests())
    assert store.delete("test") == []
    assert set(store.blobs.digests()) == all_blobs
    removed = store.delete("test2")
    assert set(removed) == all_blobs
    assert store.blobs.digests() == []
    assert not any((store.root / "manifests").iterdir())


def test_recreate_removes_replaced_layers(store: Store, tiny_dir: Path) -> None:
    """TestCreateRemovesLayers / TestCreateUnsetsSystem / TestCreateReplacesMessages."""
    files = (SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),)
    build(
        store,
        parse_name("test"),
        CreateRequest(files=files, template="{{ .Prompt }}", system="Say hi!"),
    )
    old_template, old_system = sha(b"{{ .Prompt }}"), sha(b"Say hi!")
    result = build(
        store,
        parse_name("test"),
        CreateRequest(files=files, template="{{ .System }} {{ .Prompt }}"),
    )
    assert set(result.removed_blobs) == {old_template, old_system}
    assert not store.blobs.exists(old_template) and not store.blobs.exists(old_system)
    # messages of a base model stay while the base references them
    build(store, parse_name("test"), CreateRequest(files=files, messages=(("user", "a"),)))
    build(store, parse_name("test2"), CreateRequest(from_model="test", messages=(("user", "b"),)))
    assert store.blobs.exists(sha(b'[{"role":"user","content":"a"}]\n'))


@pytest.mark.parametrize(
    ("env", "pruned"),
    [
        ({}, True),
        ({"MFC_NOPRUNE": "1"}, False),
        ({"OLLAMA_NOPRUNE": "true"}, False),
        ({"OLLAMA_NOPRUNE": "yes"}, False),  # not a Go bool, but not empty: true
        ({"OLLAMA_NOPRUNE": "false"}, True),
        ({"MFC_NOPRUNE": "0", "OLLAMA_NOPRUNE": "1"}, True),  # ours wins
    ],
)
def test_noprune_keeps_the_replaced_blobs_in_a_build_as_in_a_pull(
    store: Store, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], pruned: bool
) -> None:
    for var in ("MFC_NOPRUNE", "OLLAMA_NOPRUNE"):
        monkeypatch.delenv(var, raising=False)
    files = (SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),)
    build(store, parse_name("m"), CreateRequest(files=files, system="Old."))
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    result = build(store, parse_name("m"), CreateRequest(files=files, system="New."))
    assert result.removed_blobs == ((sha(b"Old."),) if pruned else ())
    assert store.blobs.exists(sha(b"Old.")) is not pruned


def test_copy_shares_blobs_and_keeps_bytes(store: Store, tiny_dir: Path) -> None:
    build(
        store,
        parse_name("src"),
        CreateRequest(files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),)),
    )
    blobs = store.blobs.digests()
    store.copy("SRC", "team/dst:v1")
    assert read(store, "team/dst:v1") == read(store, "src")
    assert store.blobs.digests() == blobs
    assert store.delete("src") == []
    assert store.verify() == []


def test_template_detected_from_gguf(store: Store, tiny_dir: Path) -> None:
    """No TEMPLATE: the GGUF's chat template picks a named template and its stop words,
    placed right after the model layer; a TEMPLATE replaces it, PARAMETERs merge over it."""
    chatml = named_template("chatml")
    events: list[ProgressEvent] = []
    build(
        store,
        parse_name("auto"),
        CreateRequest(files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),)),
        progress=events.append,
    )
    stop = b'{"stop":["\\u003c|im_start|\\u003e","\\u003c|im_end|\\u003e"]}\n'
    assert json.loads(stop)["stop"] == chatml.stop == ["<|im_start|>", "<|im_end|>"]
    expected = manifest_bytes(
        tiny_config(),
        [
            layer(MODEL, (tiny_dir / "tiny.gguf").read_bytes(), **{"from": "tiny.gguf"}),
            layer(TEMPLATE, chatml.template.encode()),
            layer(PARAMS, stop),
        ],
    )
    assert read(store, "auto") == expected
    assert "using autodetected template chatml" in [e.status for e in events]
    build(
        store,
        parse_name("explicit"),
        CreateRequest(
            files=(SourceFile("tiny.gguf", tiny_dir / "tiny.gguf"),),
            template="{{ .Prompt }}",
            parameters={"temperature": 0.5},
        ),
    )
    merged = b'{"stop":["\\u003c|im_start|\\u003e","\\u003c|im_end|\\u003e"],"temperature":0.5}\n'
    assert [
        (x["mediaType"], x["digest"]) for x in json.loads(read(store, "explicit"))["layers"]
    ] == [
        (MODEL, sha((tiny_dir / "tiny.gguf").read_bytes())),
        (TEMPLATE, sha(b"{{ .Prompt }}")),
        (PARAMS, sha(merged)),
    ]


def test_projector_and_draft_layers(store: Store, tiny_dir: Path, tmp_path: Path) -> None:
    """Several FROM files are keyed relative to their common folder and ordered by key; a
    projector GGUF becomes a projector layer; DRAFT layers come after adapters and the
    config records the draft."""
    (tmp_path / "vision").mkdir()
    write_tiny_model(
        tmp_path / "vision" / "mmproj.gguf",
        arch="clip",
        general_type="projector",
        chat_template=None,
        seed=11,
    )
    shutil.copy(tiny_dir / "other.gguf", tmp_path / "model.gguf")
    write_tiny_model(tmp_path / "draft.gguf", chat_template=None, seed=12)
    request = CreateRequest(
        files=(
            SourceFile("vision/mmproj.gguf", tmp_path / "vision" / "mmproj.gguf"),
            SourceFile("model.gguf", tmp_path / "model.gguf"),
        ),
        adapters=(SourceFile("lora.gguf", tiny_dir / "lora.gguf"),),
        draft_files=(SourceFile("draft.gguf", tmp_path / "draft.gguf"),),
    )
    build(store, parse_name("multi"), request)
    doc = json.loads(read(store, "multi"))
    assert [(x["mediaType"].rsplit(".", 1)[1], x.get("from")) for x in doc["layers"]] == [
        ("model", "model.gguf"),
        ("projector", "vision/mmproj.gguf"),
        ("adapter", "lora.gguf"),
        ("draft", "draft.gguf"),
    ]
    config = json.loads(store.blobs.read_bytes(doc["config"]["digest"]))
    assert config["draft"] == {"model_format": "gguf", "architecture": "llama"}
    assert config["model_families"] == ["llama"]
