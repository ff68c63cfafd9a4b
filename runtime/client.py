"""A small HTTP client of a running `mfc serve`, for `mfc run`, `mfc ps` and `mfc stop`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from runtime.config import ServerConfig, env_var
from toolchain.errors import MfcError


class ServerError(MfcError):
    """The server answered with an error, or could not be reached."""


def base_url(env: Mapping[str, str] | None = None) -> str:
    """Where the server is: `MFC_HOST`, then `OLLAMA_HOST`, else http://127.0.0.1:11434."""
    env = os.environ if env is None else env
    raw = env_var(env, "MFC_HOST") or env_var(env, "OLLAMA_HOST")
    scheme = raw.split("://", 1)[0] if "://" in raw else "http"
    config = ServerConfig.from_env({"OLLAMA_HOST": raw})
    url = config.base_url
    return url.replace("http://", f"{scheme}://", 1)


class Client:
    def __init__(self, url: str | None = None, timeout: float | None = None) -> None:
        self.url = url or base_url()
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _unreachable(self) -> ServerError:
        return ServerError(
            f"could not connect to the mfc server at {self.url}",
            hint="start it with `mfc serve` (or set MFC_HOST / OLLAMA_HOST to where it runs)",
        )

    @staticmethod
    def _error(response: httpx.Response) -> ServerError:
        try:
            body = json.loads(response.read() or b"{}")
            message = body.get("error") if isinstance(body, dict) else None
        except ValueError:
            message = None
        return ServerError(str(message or f"server returned HTTP {response.status_code}"))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TransportError:
            raise self._unreachable() from None
        if response.status_code >= 400:
            raise self._error(response)
        return response.json() if response.content else None

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The NDJSON objects of a streamed response (an `error` line raises)."""
        try:
            with self.http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    raise self._error(response)
                for line in response.iter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if item.get("error"):
                        raise ServerError(str(item["error"]))
                    yield item
        except httpx.TransportError:
            raise self._unreachable() from None
