"""Where registry credentials come from: the environment, then the docker config file.

Lookup order for a registry host (`localhost:5000`, `ghcr.io`, ...):

1. `MFC_REGISTRY_USERNAME` + `MFC_REGISTRY_PASSWORD` (what a CI job sets from its secrets),
   or `MFC_REGISTRY_TOKEN` (a bearer token sent as-is).
2. The docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), the file
   `docker login` writes: a credential helper named for the host in `credHelpers`, else the
   `auths` entry for the host (`auth` = base64 "user:password", or `username`/`password`,
   `identitytoken`, `registrytoken`), else the global `credsStore` helper.

Nothing is looked up until a registry actually asks for credentials.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from toolchain.registry.errors import AuthError

ENV_USERNAME = "MFC_REGISTRY_USERNAME"
ENV_PASSWORD = "MFC_REGISTRY_PASSWORD"
ENV_TOKEN = "MFC_REGISTRY_TOKEN"

# docker writes Docker Hub's entry under its legacy v1 URL
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What we can present to a registry or its token service."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None  # docker's OAuth2 refresh token
    registry_token: str | None = None  # a bearer token, used without a token exchange
    source: str = ""  # where they came from, for error messages

    @property
    def has_basic(self) -> bool:
        return self.username is not None and self.password is not None

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def credentials_for(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials for `host` from the environment or the docker config (None if none)."""
    env = os.environ if env is None else env
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if username and password is not None:
        return Credentials(username=username, password=password, source=ENV_USERNAME)
    token = env.get(ENV_TOKEN)
    if token:
        return Credentials(registry_token=token, source=ENV_TOKEN)
    return _from_docker_config(host, docker_config_path(env))


def docker_config_path(env: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    directory = env.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def _from_docker_config(host: str, path: Path) -> Credentials | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuthError(
            f"cannot read docker config {path}: {exc}",
            hint="fix or move the file, or set MFC_REGISTRY_USERNAME/MFC_REGISTRY_PASSWORD",
        ) from exc
    if not isinstance(config, dict):
        return None
    source = str(path)
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return _from_helper(helpers[host], host, source)
    auths = config.get("auths")
    if isinstance(auths, dict):
        entry = _auth_entry(auths, host)
        if entry is not None:
            found = _from_auth_entry(entry, source)
            if found is not None:
                return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, host, source)
    return None


def _auth_entry(auths: dict[str, object], host: str) -> dict[str, object] | None:
    keys = [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]
    if host in ("registry-1.docker.io", "docker.io", "index.docker.io"):
        keys.extend(_DOCKER_HUB_KEYS)
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            return entry
    return None


def _from_auth_entry(entry: dict[str, object], source: str) -> Credentials | None:
    def text(key: str) -> str | None:
        value = entry.get(key)
        return value if isinstance(value, str) and value else None

    username, password = text("username"), text("password")
    encoded = text("auth")
    if encoded is not None:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError(
                f"the `auth` entry in {source} is not base64 of `user:password`",
                hint="run `docker login` again or fix the entry",
            ) from exc
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthError(f"the `auth` entry in {source} has no `:` between user and password")
    identity, registry_token = text("identitytoken"), text("registrytoken")
    if not (username or identity or registry_token):
        return None
    return Credentials(
        username=username,
        password=password,
        identity_token=identity,
        registry_token=registry_token,
        source=source,
    )


def _from_helper(helper: str, host: str, source: str) -> Credentials | None:
    """Ask `docker-credential-<helper> get` (the docker credential-helper protocol)."""
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise AuthError(
            f"{source} names the credential helper {helper!r}, "
            f"but docker-credential-{helper} is not on PATH",
            hint="install the helper, or set MFC_REGISTRY_USERNAME/MFC_REGISTRY_PASSWORD",
        )
    try:
        done = subprocess.run(
            [program, "get"], input=host, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"credential helper {helper!r} failed: {exc}") from exc
    if done.returncode != 0:
        # helpers answer "credentials not found in native keychain" for unknown hosts
        return None
    try:
        answer = json.loads(done.stdout)
    except ValueError as exc:
        raise AuthError(f"credential helper {helper!r} printed something that is not JSON") from exc
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(secret, str) or not secret:
        return None
    if username == "<token>":  # the helper protocol's marker for an identity token
        return Credentials(identity_token=secret, source=f"docker-credential-{helper}")
    return Credentials(
        username=username if isinstance(username, str) else "",
        password=secret,
        source=f"docker-credential-{helper}",
    )
