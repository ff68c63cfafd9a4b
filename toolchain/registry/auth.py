"""Registry authentication: answer `WWW-Authenticate` challenges (Bearer token flow, Basic).

The flow is the one docker and the reference use. A request goes out with whatever we
already hold for its repository; on 401 the challenge says what the registry wants:

- `Basic realm=...`: send the credentials as HTTP basic auth (and keep doing so).
- `Bearer realm=...,service=...,scope=...`: fetch a token from `realm` for that service and
  scope (GET with basic auth, or an OAuth2 refresh-token POST for docker identity tokens;
  anonymous when we have no credentials), then retry with `Authorization: Bearer <token>`.

Tokens are cached per repository, so a pull asks the token service once, not per blob.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import httpx

from toolchain.registry.credentials import Credentials
from toolchain.registry.errors import AuthError

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_REPO_PATH = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags)/")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed `WWW-Authenticate` challenge."""

    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """Parse `Bearer realm="...",service="...",scope="..."` (None if the header is empty)."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
    return Challenge(scheme.lower(), params)


def repository_of(url: httpx.URL) -> str:
    """The repository a /v2/ URL addresses ("" for the /v2/ ping and anything else)."""
    match = _REPO_PATH.match(url.path)
    return match.group(1) if match else ""


CredentialSource = Callable[[], Credentials | None]


class RegistryAuth(httpx.Auth):
    """An httpx auth flow for one registry host, shared by all threads of a pull or push."""

    def __init__(self, host: str, credentials: CredentialSource) -> None:
        self.host = host
        self._load_credentials = credentials
        self._credentials: Credentials | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # repository -> "Bearer ..."
        self._basic = False  # the registry asked for basic auth once: keep sending it

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._loaded:
                self._credentials = self._load_credentials()
                self._loaded = True
            return self._credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        repository = repository_of(request.url)
        held = self._held(repository)
        if held is not None:
            request.headers["Authorization"] = held
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            header = self._basic_header(challenge)
        elif challenge.scheme == "bearer":
            header = yield from self._token_flow(challenge, repository)
        else:
            raise AuthError(
                f"registry {self.host} asks for {challenge.scheme!r} authentication, "
                "which mfc does not speak",
                hint="supported: Bearer token flow and Basic auth",
            )
        if header == held:
            raise AuthError(
                f"registry {self.host} refused the credentials" + self._source_note(),
                hint="check MFC_REGISTRY_USERNAME/MFC_REGISTRY_PASSWORD or `docker login` again",
            )
        request.headers["Authorization"] = header
        retried = yield request
        if retried.status_code == 401:
            if self.credentials() is None:
                raise AuthError(
                    f"registry {self.host} requires authentication",
                    hint="set MFC_REGISTRY_USERNAME and MFC_REGISTRY_PASSWORD, or `docker login`",
                )
            raise AuthError(
                f"registry {self.host} refused the credentials{self._source_note()}",
                hint="check MFC_REGISTRY_USERNAME/MFC_REGISTRY_PASSWORD or `docker login` again",
            )

    def _source_note(self) -> str:
        creds = self.credentials()
        return f" from {creds.source}" if creds is not None and creds.source else ""

    def _held(self, repository: str) -> str | None:
        with self._lock:
            token = self._tokens.get(repository)
            basic = self._basic
        if token is not None:
            return token
        if basic:
            creds = self.credentials()
            if creds is not None and creds.has_basic:
                return creds.basic_header()
        return None

    def _basic_header(self, challenge: Challenge) -> str:
        creds = self.credentials()
        if creds is None or not creds.has_basic:
            realm = challenge.params.get("realm", "")
            raise AuthError(
                f"registry {self.host} requires a username and password"
                + (f" (realm {realm!r})" if realm else ""),
                hint="set MFC_REGISTRY_USERNAME and MFC_REGISTRY_PASSWORD, or `docker login`",
            )
        with self._lock:
            self._basic = True
        return creds.basic_header()

    def _token_flow(
        self, challenge: Challenge, repository: str
    ) -> Generator[httpx.Request, httpx.Response, str]:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host} sent a Bearer challenge without a realm")
        creds = self.credentials()
        if creds is not None and creds.registry_token:
            header = f"Bearer {creds.registry_token}"
        else:
            token_request = self._token_request(realm, challenge.params, creds)
            token_response = yield token_request
            token_response.read()
            header = f"Bearer {self._token_from(token_response, realm, creds)}"
        with self._lock:
            self._tokens[repository] = header
        return header

    def _token_request(
        self, realm: str, params: dict[str, str], creds: Credentials | None
    ) -> httpx.Request:
        scopes = params.get("scope", "").split()
        service = params.get("service")
        if creds is not None and creds.identity_token:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": "mfc",
                "scope": " ".join(scopes),
            }
            if service:
                form["service"] = service
            return httpx.Request("POST", realm, data=form)
        query: list[tuple[str, str | int | float | bool | None]] = []
        if service:
            query.append(("service", service))
        query.extend(("scope", scope) for scope in scopes)
        headers = {}
        if creds is not None and creds.has_basic:
            headers["Authorization"] = creds.basic_header()
            query.append(("account", creds.username or ""))
        return httpx.Request("GET", realm, params=query, headers=headers)

    def _token_from(self, response: httpx.Response, realm: str, creds: Credentials | None) -> str:
        if response.status_code in (401, 403):
            who = f"the credentials from {creds.source}" if creds else "anonymous access"
            raise AuthError(
                f"token service {realm} refused {who} for registry {self.host} "
                f"({response.status_code})",
                hint="set MFC_REGISTRY_USERNAME and MFC_REGISTRY_PASSWORD, or `docker login`",
            )
        if response.status_code >= 400:
            raise AuthError(
                f"token service {realm} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise AuthError(f"token service {realm} did not answer JSON") from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token service {realm} answered without a token")
        return token
