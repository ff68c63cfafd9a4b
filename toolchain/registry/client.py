"""The OCI distribution v2 protocol, one method per request a pull or push makes.

`RegistryClient` speaks to one registry host. Everything above it (which blobs to send,
progress, the store) lives in `pull`/`push`; everything below it is httpx.

Transport rules:
- `https` unless the model name says `http://`; plain http needs `insecure=True` (the
  reference's rule). With `insecure=True` and no scheme in the name, https is tried first
  (certificate not verified) and plain http is used if the TLS handshake fails, as docker
  does for its insecure registries.
- Extra CAs for https come from `SSL_CERT_FILE`/`SSL_CERT_DIR`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import httpx

from toolchain.registry.auth import CredentialSource, RegistryAuth
from toolchain.registry.credentials import Credentials, credentials_for
from toolchain.registry.errors import AuthError, RegistryBusyError, RegistryError
from toolchain.store.blobs import digest_of_bytes

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = f"{MANIFEST_V2}, {OCI_MANIFEST}"
INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
USER_AGENT = "mfc (distribution; +ollama-compatible)"
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_INSECURE_HINT = "for a registry that serves plain http, pass --insecure"


class RegistryClient:
    """A connection to one registry host (`localhost:5000`, `ghcr.io`)."""

    def __init__(
        self,
        host: str,
        *,
        scheme: str | None = None,
        insecure: bool = False,
        credentials: Credentials | None = None,
    ) -> None:
        if scheme not in (None, "http", "https"):
            raise RegistryError(f"unsupported protocol {scheme!r} in the model name")
        if scheme == "http" and not insecure:
            raise RegistryError("insecure protocol http", hint=_INSECURE_HINT)
        self.host = host
        self._scheme = scheme
        self._insecure = insecure
        self.auth = RegistryAuth(
            host, (lambda: credentials) if credentials is not None else _lookup(host)
        )
        self._http: httpx.Client | None = None
        self._base = ""

    # -- connection -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def base_url(self) -> str:
        """`scheme://host`, settled by the first request (the /v2/ ping)."""
        self._connect()
        return self._base

    def _connect(self) -> httpx.Client:
        if self._http is not None:
            return self._http
        schemes = [self._scheme] if self._scheme else ["https"]
        if self._insecure and self._scheme is None:
            schemes.append("http")
        failure: Exception | None = None
        for scheme in schemes:
            http = httpx.Client(
                auth=self.auth,
                timeout=_TIMEOUT,
                verify=not self._insecure,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            )
            base = f"{scheme}://{self.host}"
            try:
                # unauthenticated on purpose: the answer (200 or 401) proves a registry is there
                response = http.get(f"{base}/v2/", auth=None)
            except httpx.TransportError as exc:
                http.close()
                failure = exc
                continue
            if response.status_code not in (200, 401):
                http.close()
                raise RegistryError(
                    f"{base} is not an OCI registry: GET /v2/ answered {response.status_code}",
                    hint="check the host part of the model name",
                )
            self._http, self._base = http, base
            return http
        raise _unreachable(self.host, failure, plain_http_possible=not self._insecure)

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        ok: tuple[int, ...],
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        http = self._connect()
        try:
            response = http.request(
                method, self._absolute(url), headers=headers, content=content, params=params
            )
        except httpx.TransportError as exc:
            raise RegistryError(f"{what}: {self.host}: {_describe(exc)}") from exc
        if response.status_code not in ok:
            raise_for_status(response, what, self.host)
        return response

    def _absolute(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        return f"{self.base_url}{url}" if url.startswith("/") else f"{self.base_url}/{url}"

    # -- manifests --------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest bytes (exactly as served) and their media type."""
        response = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            what="pull model manifest",
            ok=(200,),
            headers={"Accept": MANIFEST_ACCEPT},
        )
        body = response.content
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        served = response.headers.get("Docker-Content-Digest")
        actual = digest_of_bytes(body)
        if served and served.startswith("sha256:") and served != actual:
            raise RegistryError(
                f"pull model manifest: registry says {served} but the bytes hash to {actual}"
            )
        return body, media_type

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> None:
        self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            what="push manifest",
            ok=(200, 201),
            headers={"Content-Type": media_type},
            content=body,
        )

    # -- blobs ------------------------------------------------------------------------

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self._request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", what="check blob", ok=(200, 404)
        )
        return response.status_code == 200

    @contextmanager
    def open_blob(
        self, repository: str, digest: str, start: int, end: int
    ) -> Iterator[httpx.Response]:
        """GET bytes [start, end) of a blob, following the registry's redirect to storage.

        Transport errors propagate as httpx exceptions: the downloader retries them.
        """
        http = self._connect()
        headers = {"Range": f"bytes={start}-{end - 1}"}
        url = self._absolute(f"/v2/{repository}/blobs/{digest}")
        with http.stream("GET", url, headers=headers, follow_redirects=True) as response:
            if response.status_code not in (200, 206):
                response.read()
                raise_for_status(response, f"pull blob {digest}", self.host)
            yield response

    def start_upload(
        self, repository: str, mount: str | None = None, source: str | None = None
    ) -> str | None:
        """Open an upload session (None when the registry mounted `mount` from `source`)."""
        params = {"mount": mount, "from": source} if mount and source else None
        response = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            what="start upload",
            ok=(201, 202),
            params=params,
        )
        if response.status_code == 201 and params is not None:
            return None
        return _location(response, "start upload")

    def upload_chunk(self, location: str, data: bytes, offset: int) -> str:
        """PATCH one chunk at `offset`; returns the location for the next request."""
        response = self._request(
            "PATCH",
            location,
            what="upload blob chunk",
            ok=(202, 204),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(data) - 1}",
            },
            content=data,
        )
        return _location(response, "upload blob chunk")

    def finish_upload(self, location: str, digest: str) -> None:
        url = httpx.URL(self._absolute(location))
        self._request(
            "PUT",
            str(url.copy_merge_params({"digest": digest})),
            what=f"commit blob {digest}",
            ok=(201, 204),
            headers={"Content-Type": "application/octet-stream"},
            content=b"",
        )


def _lookup(host: str) -> CredentialSource:
    return lambda: credentials_for(host)


def _location(response: httpx.Response, what: str) -> str:
    location = response.headers.get("Docker-Upload-Location") or response.headers.get("Location")
    if not location:
        raise RegistryError(
            f"{what}: the registry answered {response.status_code} without a Location"
        )
    return str(response.url.join(location))


def raise_for_status(response: httpx.Response, what: str, host: str) -> None:
    """Turn a registry error response into an MfcError that says what was refused and why."""
    status = response.status_code
    detail = _error_detail(response)
    if status == 401:
        raise AuthError(
            f"{what}: {host} requires authentication" + (f" ({detail})" if detail else ""),
            hint="set MFC_REGISTRY_USERNAME and MFC_REGISTRY_PASSWORD, or `docker login`",
        )
    if status == 403:
        raise AuthError(f"{what}: {host} denied access" + (f" ({detail})" if detail else ""))
    if status == 404 and what == "pull model manifest":
        raise RegistryError(
            "pull model manifest: file does not exist",
            hint=f"{response.request.url.path} is not in the registry {host}: check name and tag",
        )
    message = f"{what}: {host} answered {status}" + (f": {detail}" if detail else "")
    if status >= 500 or status == 429:
        raise RegistryBusyError(message)
    raise RegistryError(message)


def _error_detail(response: httpx.Response) -> str:
    """The `errors[].code: message` list of a distribution error body, or its text."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = []
        for error in body["errors"]:
            if isinstance(error, dict):
                code, message = error.get("code", ""), error.get("message", "")
                parts.append(f"{code}: {message}" if code else str(message))
        return "; ".join(parts)
    return ""


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _unreachable(host: str, exc: Exception | None, *, plain_http_possible: bool) -> RegistryError:
    text = _describe(exc) if exc is not None else "no answer"
    tls = "SSL" in text or "TLS" in text or "certificate" in text
    hint = (
        _INSECURE_HINT if plain_http_possible and tls else "is the registry running and reachable?"
    )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        hint = "the certificate is not trusted: point SSL_CERT_FILE at its CA, or pass --insecure"
    return RegistryError(f"cannot reach registry {host}: {text}", hint=hint)
