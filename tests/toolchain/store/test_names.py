"""Model names parse, validate and display as the reference's types/model/name.go does."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolchain.store import InvalidNameError, Store, parse_name
from toolchain.store.names import MISSING, parse_name_bare, parse_name_lenient


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("model", "registry.ollama.ai/library/model:latest"),
        ("ns/model", "registry.ollama.ai/ns/model:latest"),
        ("host:port/ns/model:tag", "host:port/ns/model:tag"),
        ("localhost:5000/team/model:v1.2", "localhost:5000/team/model:v1.2"),
        ("Model_1.2-x:Tag_3", "registry.ollama.ai/library/Model_1.2-x:Tag_3"),
    ],
)
def test_parse_valid(text: str, full: str) -> None:
    assert str(parse_name(text)) == full


def test_scheme_is_split_from_host() -> None:
    name = parse_name("http://host:port/ns/model:tag")
    assert (name.scheme, name.host) == ("http", "host:port")


@pytest.mark.parametrize(
    "text",
    [
        "../x",
        "a/b/c/d/e",
        "a/b/c/d",
        "m:",
        ":t",
        "/nn/mm",
        "hh//",
        "m@d",
        "",
        ".hidden",
        "-x",
        "ns.x/model",
        "mödel",
        "a" * 81,
        "model:" + "t" * 81,
        "x/y:",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_name(text)


def test_missing_parts_are_marked() -> None:
    assert parse_name_bare("m:") == ("", "", "", "m", MISSING)
    assert parse_name_lenient("a/b/c/d").host == "a/b"


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("model", "model:latest"),
        ("ns/model:tag", "ns/model:tag"),
        ("host/library/model:tag", "host/library/model:tag"),
        ("REGISTRY.ollama.ai/LIBRARY/m:t", "m:t"),
    ],
)
def test_display_shortest(text: str, short: str) -> None:
    assert parse_name(text).display() == short


def test_case_insensitive_resolution(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.manifest_path(parse_name("llama3:latest"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{}")
    assert store.resolve("LLaMA3:Latest") == parse_name("llama3:latest")
    # a part matched on its own keeps the requested spelling of the others
    assert store.resolve("LLAMA3:v2").display() == "llama3:v2"
    assert store.resolve("other").display() == "other:latest"


def test_invalid_manifest_paths_are_skipped(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for rel in [
        "registry.ollama.ai/library/ok/latest",
        "registry.ollama.ai/library/bad/.hidden",
        "registry.ollama.ai/library/deeper/x/y",
    ]:
        p = tmp_path / "manifests" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"{}")
    assert [n.display() for n in store.names()] == ["ok:latest"]
