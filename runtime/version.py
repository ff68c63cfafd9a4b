"""mfc's own version on every response, in the `X-Mfc-Version` header.

`/api/version` reports the Ollama API version mfc implements (what clients compare against);
this header says which mfc answered, for bug reports and for clients that care.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from toolchain import __version__

HEADER = "x-mfc-version"


class VersionHeaderMiddleware:
    """Adds `X-Mfc-Version: <mfc version>` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.header = (HEADER.encode("latin-1"), __version__.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_version)
