"""Registries that want credentials: htpasswd over TLS, and the Bearer token flow."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.toolchain.registry.harness import (
    Registry,
    TokenServer,
    self_signed_cert,
    start_registry,
    write_htpasswd,
)
from tests.toolchain.registry.models import snapshot, store_model
from toolchain.registry.auth import parse_challenge
from toolchain.registry.credentials import credentials_for
from toolchain.registry.errors import AuthError, RegistryError
from toolchain.registry.pull import pull_model
from toolchain.registry.push import push_model
from toolchain.store import Store

USERS = {"ci-bot": "s3cret-pa55"}


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Path]]:
    """htpasswd auth (bcrypt) over https with a self-signed certificate made here."""
    workdir = tmp_path_factory.mktemp("tls-registry")
    cert, key, _ = self_signed_cert(workdir)
    htpasswd = write_htpasswd(workdir / "htpasswd", USERS)
    registry = start_registry(workdir, htpasswd=htpasswd, tls=(cert, key))
    try:
        yield registry, cert
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Registry, TokenServer]]:
    workdir = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(workdir / "token", USERS)
    try:
        registry = start_registry(workdir, token=tokens)
        try:
            yield registry, tokens
        finally:
            registry.stop()
    finally:
        tokens.stop()


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No credentials from the environment, and an empty docker config dir."""
    for var in ("MFC_REGISTRY_USERNAME", "MFC_REGISTRY_PASSWORD", "MFC_REGISTRY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    docker = tmp_path / "docker"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    return docker


def _login(
    monkeypatch: pytest.MonkeyPatch, user: str = "ci-bot", password: str | None = None
) -> None:
    monkeypatch.setenv("MFC_REGISTRY_USERNAME", user)
    monkeypatch.setenv("MFC_REGISTRY_PASSWORD", password or USERS[user])


def test_htpasswd_over_tls_with_credentials_from_the_environment(
    tls_registry: tuple[Registry, Path],
    no_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    other_store: Store,
    small_gguf: Path,
) -> None:
    registry, cert = tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    name = f"{registry.host}/team/secure:v1"
    store_model(store, name, small_gguf)

    with pytest.raises(AuthError) as caught:
        push_model(name, store=store)
    assert "requires a username and password" in caught.value.message
    assert caught.value.hint and "MFC_REGISTRY_USERNAME" in caught.value.hint

    _login(monkeypatch, password="wrong")
    with pytest.raises(AuthError, match="refused the credentials from MFC_REGISTRY_USERNAME"):
        push_model(name, store=store)

    _login(monkeypatch)
    push_model(name, store=store)
    pull_model(name, store=other_store)
    assert snapshot(other_store) == snapshot(store)


def test_untrusted_certificate_is_refused_unless_insecure(
    tls_registry: tuple[Registry, Path],
    no_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    small_gguf: Path,
) -> None:
    registry, _ = tls_registry
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    _login(monkeypatch)
    name = f"{registry.host}/team/untrusted:v1"
    store_model(store, name, small_gguf)
    with pytest.raises(RegistryError) as caught:
        push_model(name, store=store)
    assert caught.value.hint and "SSL_CERT_FILE" in caught.value.hint
    push_model(name, store=store, insecure=True)  # --insecure skips verification


def test_credentials_from_the_docker_config_file(
    tls_registry: tuple[Registry, Path],
    no_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    small_gguf: Path,
) -> None:
    registry, cert = tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    auth = base64.b64encode(b"ci-bot:" + USERS["ci-bot"].encode()).decode()
    (no_credentials / "config.json").write_text(
        json.dumps({"auths": {registry.host: {"auth": auth}}})
    )
    name = f"{registry.host}/team/dockercfg:v1"
    store_model(store, name, small_gguf)
    result = push_model(name, store=store)
    assert result.uploaded


def test_bearer_token_flow(
    token_registry: tuple[Registry, TokenServer],
    no_credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    store: Store,
    other_store: Store,
    small_gguf: Path,
) -> None:
    registry, tokens = token_registry
    name = f"{registry.host}/team/tokened:v1"
    store_model(store, name, small_gguf)

    with pytest.raises(AuthError, match="refused anonymous access"):
        push_model(name, store=store, insecure=True)

    _login(monkeypatch)
    tokens.requests.clear()
    push_model(name, store=store, insecure=True)
    scopes = [scope for request in tokens.requests for scope in request["scopes"]]  # type: ignore[attr-defined]
    # docker-registry lists the actions in Go map order: "pull,push" or "push,pull"
    actions = [set(s.split(":")[2].split(",")) for s in scopes if s.startswith("repository:")]
    assert {"pull", "push"} in actions
    assert all(request["user"] == "ci-bot" for request in tokens.requests)
    assert all(request["service"] == [tokens.service] for request in tokens.requests)
    # tokens are cached per repository: not one token request per blob
    assert len(tokens.requests) <= 3

    pull_model(name, store=other_store, insecure=True)
    assert snapshot(other_store) == snapshot(store)


def test_parse_challenge() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/m:pull,push repository:team/base:pull"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:team/m:pull,push repository:team/base:pull",
    }
    basic = parse_challenge('Basic realm="a \\"quoted\\" realm"')
    assert basic is not None and basic.scheme == "basic"
    assert basic.params == {"realm": 'a "quoted" realm'}
    assert parse_challenge("") is None


def test_credentials_lookup_order(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://reg.example:5000": {"username": "u", "password": "p"},
                    "other.example": {"identitytoken": "refresh-me"},
                }
            }
        )
    )
    env = {"DOCKER_CONFIG": str(tmp_path)}
    found = credentials_for("reg.example:5000", env)
    assert found is not None and (found.username, found.password) == ("u", "p")
    token = credentials_for("other.example", env)
    assert token is not None and token.identity_token == "refresh-me"
    assert credentials_for("unknown.example", env) is None
    # the environment wins over the file
    env |= {"MFC_REGISTRY_USERNAME": "ci", "MFC_REGISTRY_PASSWORD": "pw"}
    found = credentials_for("reg.example:5000", env)
    assert found is not None and (found.username, found.password, found.source) == (
        "ci",
        "pw",
        "MFC_REGISTRY_USERNAME",
    )


def test_broken_docker_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(AuthError, match="cannot read docker config"):
        credentials_for("reg.example", {"DOCKER_CONFIG": str(tmp_path)})
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example": {"auth": "%%%"}}}))
    with pytest.raises(AuthError, match="not base64"):
        credentials_for("reg.example", {"DOCKER_CONFIG": str(tmp_path)})


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'if [ "$host" = "reg.example" ]; then '
        'echo \'{"ServerURL":"reg.example","Username":"hu","Secret":"hs"}\'; '
        "else echo 'credentials not found' >&2; exit 1; fi\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:/usr/bin:/bin")
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    found = credentials_for("reg.example", env)
    assert found is not None and (found.username, found.password) == ("hu", "hs")
    assert credentials_for("elsewhere.example", env) is None
