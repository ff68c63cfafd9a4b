"""A real OCI registry on loopback for the distribution tests, plus what it needs for auth.

`start_registry` runs Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a random
port, a temp storage dir and a config written here; optionally with htpasswd auth (bcrypt),
TLS (a self-signed certificate made here), or token auth backed by `TokenServer`, a tiny
loopback token service that signs JWTs the registry verifies against a cert made here.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGISTRY_BIN = Path("/usr/bin/docker-registry")
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    process: subprocess.Popen[bytes]
    storage: Path
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_registry(
    workdir: Path,
    *,
    htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None,
    token: TokenServer | None = None,
) -> Registry:
    """Start docker-registry on a random loopback port; the caller must `stop()` it."""
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    http: dict[str, object] = {"addr": "127.0.0.1:0", "secret": "mfc-test-secret"}
    if tls is not None:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "mfc-test", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.cert_path),
            }
        }
    config_path = workdir / "config.yml"  # JSON is YAML
    config_path.write_text(json.dumps(config, indent=1))
    log = workdir / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REGISTRY_BIN), "serve", str(config_path)], stdout=out, stderr=subprocess.STDOUT
        )
    registry = Registry("", process, storage, log, "https" if tls else "http")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        match = _LISTENING.search(log.read_text(errors="replace"))
        if match:
            registry.host = f"127.0.0.1:{match.group(1)}"
            return registry
        if process.poll() is not None:
            break
        time.sleep(0.05)
    registry.stop()
    raise RuntimeError(f"docker-registry did not start:\n{log.read_text(errors='replace')}")


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes (what docker-registry accepts)."""
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def self_signed_cert(directory: Path, name: str = "tls") -> tuple[Path, Path, rsa.RSAPrivateKey]:
    """A CA-flagged self-signed certificate for 127.0.0.1/localhost: (cert.pem, key.pem, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mfc-test-{name}")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A loopback token service for the registry's Bearer flow (docker's token protocol)."""

    directory: Path
    users: dict[str, str]
    service: str = "mfc-test-registry"
    issuer: str = "mfc-test-issuer"
    requests: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cert_path, _, self._key = self_signed_cert(self.directory, "token")
        self._cert_der = x509.load_pem_x509_certificate(self.cert_path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(handler.path).query)
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        user = self._user(handler.headers.get("Authorization", ""))
        self.requests.append({"user": user, "scopes": scopes, "service": query.get("service")})
        if user is None:
            body, status = b'{"details":"authentication required"}', 401
        else:
            body, status = json.dumps({"token": self._jwt(user, scopes)}).encode(), 200
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user if self.users.get(user) == password else None

    def _jwt(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)
