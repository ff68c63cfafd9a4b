"""The catalog's memory of resolved names: a name spelled as stored is read from the store
once, and read again as soon as its manifest changes (rebuilt, removed, re-created)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ApiError
from runtime.models import Catalog
from tests.runtime.conftest import build_into
from toolchain.store import Store, StoredModel


def test_a_name_is_read_once_until_its_manifest_changes(
    tmp_path: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_root = tmp_path / "store"
    build_into(store_root, "one", f"FROM {smollm2_gguf}\nSYSTEM first\n", tmp_path)
    catalog = Catalog(Store(store_root))
    reads: list[str] = []
    stored = catalog.stored

    def reading(raw: str) -> StoredModel:
        reads.append(raw)
        return stored(raw)

    monkeypatch.setattr(catalog, "stored", reading)

    first = catalog.get("one", "missing")
    assert catalog.get("one", "missing") is first
    assert reads == ["one"]
    # another spelling resolves to the same model, but is read from the store every time
    assert catalog.get("ONE:Latest", "missing").digest == first.digest
    assert catalog.get("ONE:Latest", "missing").digest == first.digest
    assert reads == ["one", "ONE:Latest", "ONE:Latest"]

    build_into(store_root, "one", f"FROM {smollm2_gguf}\nSYSTEM second\n", tmp_path)
    rebuilt = catalog.get("one", "missing")
    assert rebuilt.system == "second" and rebuilt.digest != first.digest
    assert catalog.get("one", "missing") is rebuilt

    Store(store_root).delete("one")
    with pytest.raises(ApiError) as info:
        catalog.get("one", "model 'one' not found")
    assert info.value.status == 404 and info.value.message == "model 'one' not found"
    with pytest.raises(ApiError) as info:
        catalog.get("bad name!", "missing")
    assert info.value.status == 400
