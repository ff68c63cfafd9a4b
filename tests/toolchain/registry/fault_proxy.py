"""A loopback HTTP proxy in front of the test registry that records and breaks traffic.

Every request is logged (method, path, Range, status, body bytes sent back). Faults apply to
blob GETs by absolute offset within the blob, so they hit whichever range request covers
that offset:

- `cut(digest, at)`: send the body up to offset `at`, then close the connection (as a
  dropped network link would): the client sees a truncated response.
- `flip(digest, at)`: invert the byte at offset `at` (a corrupting middlebox).
- `fail(digest, status)`: answer a GET of the blob with `status` instead (an overloaded
  registry).
- `strip_range = True`: drop `Range` headers (a server that ignores ranges).

Each fault fires `times` times (default once) and then the proxy passes traffic untouched.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
}
_BLOB_PATH = re.compile(r"/blobs/(sha256:[0-9a-f]{64})$")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on us (or us on them) is the point of this proxy


@dataclass
class Fault:
    kind: str  # "cut" | "flip" | "fail"
    digest: str
    at: int
    times: int = 1


@dataclass
class Logged:
    method: str
    path: str
    query: str
    range: str | None
    status: int
    sent: int  # response body bytes written to the client


@dataclass
class FaultProxy:
    upstream: str  # "127.0.0.1:PORT"
    log: list[Logged] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    strip_range: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner._forward(self)

            def do_HEAD(self) -> None:
                owner._forward(self)

            def do_POST(self) -> None:
                owner._forward(self)

            def do_PUT(self) -> None:
                owner._forward(self)

            def do_PATCH(self) -> None:
                owner._forward(self)

            def do_DELETE(self) -> None:
                owner._forward(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def cut(self, digest: str, at: int, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault("cut", digest, at, times))

    def flip(self, digest: str, at: int, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault("flip", digest, at, times))

    def fail(self, digest: str, status: int, times: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault("fail", digest, status, times))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()
            self.strip_range = False

    def requests(self, method: str | None = None, contains: str = "") -> list[Logged]:
        with self._lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and contains in r.path + "?" + r.query
            ]

    def _take(self, digest: str, start: int, end: int) -> list[Fault]:
        """The armed faults on `digest` that fall inside [start, end), consuming one firing."""
        hit = []
        with self._lock:
            for fault in self.faults:
                if fault.kind == "fail":
                    continue
                if fault.digest == digest and fault.times > 0 and start <= fault.at < end:
                    fault.times -= 1
                    hit.append(fault)
        return hit

    def _failure(self, handler: BaseHTTPRequestHandler) -> int | None:
        """The status to answer instead of forwarding, if a `fail` fault is armed for this GET."""
        blob = _BLOB_PATH.search(handler.path.partition("?")[0])
        if handler.command != "GET" or blob is None:
            return None
        with self._lock:
            for fault in self.faults:
                if fault.kind == "fail" and fault.digest == blob.group(1) and fault.times > 0:
                    fault.times -= 1
                    return fault.at
        return None

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        status = self._failure(handler)
        if status is not None:
            path, _, query = handler.path.partition("?")
            with self._lock:
                self.log.append(
                    Logged(handler.command, path, query, handler.headers.get("Range"), status, 0)
                )
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            upstream.putrequest(
                handler.command, handler.path, skip_host=True, skip_accept_encoding=True
            )
            for key, value in handler.headers.items():
                if key.lower() in _HOP_BY_HOP or (self.strip_range and key.lower() == "range"):
                    continue
                upstream.putheader(key, value)
            upstream.endheaders(body)
            response = upstream.getresponse()
            self._relay(handler, response)
        finally:
            upstream.close()

    def _relay(self, handler: BaseHTTPRequestHandler, response: http.client.HTTPResponse) -> None:
        path, _, query = handler.path.partition("?")
        entry = Logged(
            handler.command, path, query, handler.headers.get("Range"), response.status, 0
        )
        with self._lock:
            self.log.append(entry)
        chunked = response.getheader("Content-Length") is None and handler.command != "HEAD"
        body = response.read() if chunked else None
        handler.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and not (chunked and key.lower() == "content-length"):
                handler.send_header(key, value)
        if body is not None:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if body is not None:
            handler.wfile.write(body)
            entry.sent = len(body)
            return
        self._stream_body(handler, response, entry, path)

    def _stream_body(
        self,
        handler: BaseHTTPRequestHandler,
        response: http.client.HTTPResponse,
        entry: Logged,
        path: str,
    ) -> None:
        total = int(response.getheader("Content-Length") or 0)
        blob = _BLOB_PATH.search(path) if handler.command == "GET" else None
        start = 0
        match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
        if match:
            start = int(match.group(1))
        faults = self._take(blob.group(1), start, start + total) if blob else []
        cut = min((f.at for f in faults if f.kind == "cut"), default=None)
        flips = sorted(f.at for f in faults if f.kind == "flip")
        offset = start
        while offset < start + total:
            chunk = bytearray(response.read(min(65536, start + total - offset)))
            if not chunk:
                break
            for at in flips:
                if offset <= at < offset + len(chunk):
                    chunk[at - offset] ^= 0xFF
            if cut is not None and offset + len(chunk) > cut:
                chunk = chunk[: cut - offset]
                handler.wfile.write(chunk)
                handler.wfile.flush()
                entry.sent += len(chunk)
                handler.close_connection = True  # drop the link mid-body
                return
            handler.wfile.write(chunk)
            entry.sent += len(chunk)
            offset += len(chunk)
