"""Fixtures of the distribution tests: a real registry on loopback, a fault proxy, stores.

Every process and server started here is stopped by the fixture that started it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.toolchain.registry.fault_proxy import FaultProxy
from tests.toolchain.registry.harness import REGISTRY_BIN, Registry, start_registry
from tests.toolchain.registry.models import tiny_gguf
from toolchain.store import Store


def _require_registry() -> None:
    if not REGISTRY_BIN.exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: `make system-deps` installs docker-registry")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-http registry without auth, for this test module."""
    _require_registry()
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def module_proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.host)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(module_proxy: FaultProxy) -> FaultProxy:
    """The fault proxy in front of `registry`, with no faults armed and an empty log."""
    module_proxy.clear()
    return module_proxy


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "models")


@pytest.fixture
def other_store(tmp_path: Path) -> Store:
    return Store(tmp_path / "other-models")


@pytest.fixture(scope="session")
def small_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1 MB GGUF."""
    return tiny_gguf(tmp_path_factory.mktemp("gguf") / "small.gguf", 1.0, seed=1)


@pytest.fixture(scope="session")
def large_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~6 MB GGUF: split into several ranges when the part size is 1 MB."""
    return tiny_gguf(tmp_path_factory.mktemp("gguf") / "large.gguf", 6.0, seed=2)
