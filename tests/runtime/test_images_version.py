"""Images sent to a model without vision are refused with the reference's 400, not dropped;
versions: /api/version is the Ollama API mfc implements, mfc's own is `mfc --version` and
the `X-Mfc-Version` header."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from runtime.app import create_app
from runtime.config import ServerConfig
from tests.runtime.conftest import mfc
from toolchain import OLLAMA_API_VERSION, __version__

#: the reference's ErrNoVisionModel text (model/model.go, Ollama 0.9 to 0.2x)
NO_VISION = "this model is missing data required for image input"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
FAST = {"temperature": 0, "num_predict": 2}


@pytest.fixture(scope="module")
def client(model_store: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(ServerConfig(models_root=model_store)), base_url="http://localhost"
    ) as c:
        yield c


def user(content: str, images: list[str] | None = None) -> dict[str, Any]:
    return {"role": "user", "content": content, **({"images": images} if images else {})}


REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "generate": ("/api/generate", {"prompt": "What is this?", "images": [PNG]}),
    "chat": ("/api/chat", {"messages": [user("What is this?", [PNG])]}),
    "chat-earlier-turn": (
        "/api/chat",
        {"messages": [user("Look", [PNG]), {"role": "assistant", "content": "ok"}, user("And?")]},
    ),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", REFUSED)
def test_images_for_a_model_without_vision_are_refused(
    client: TestClient, case: str, stream: bool
) -> None:
    path, body = REFUSED[case]
    r = client.post(path, json={"model": "demo", "stream": stream, "options": FAST, **body})
    assert r.status_code == 400
    assert r.json() == {"error": NO_VISION}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_image_url_parts_are_refused(client: TestClient, stream: bool) -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    r = client.post(
        "/v1/chat/completions",
        json={"model": "demo", "stream": stream, "messages": [{"role": "user", "content": parts}]},
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] == NO_VISION
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_no_images_is_not_a_refusal(client: TestClient) -> None:
    r = client.post(
        "/api/generate",
        json={"model": "demo", "prompt": "Hi", "images": [], "stream": False, "options": FAST},
    )
    assert r.status_code == 200, r.text


def test_api_version_is_the_ollama_api_implemented(client: TestClient) -> None:
    r = client.get("/api/version")
    assert r.json() == {"version": OLLAMA_API_VERSION}
    major, minor, _patch = (int(p) for p in OLLAMA_API_VERSION.split("."))
    assert (major, minor) >= (0, 32)  # think "max", reasoning "ultra", draft models: 0.32.11+


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/version"), ("GET", "/api/tags"), ("POST", "/api/show"), ("GET", "/nope")],
)
def test_every_response_names_the_mfc_version(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, json={"model": "missing"} if method == "POST" else None)
    assert r.headers["x-mfc-version"] == __version__


def test_refused_hosts_still_name_the_mfc_version(model_store: Path) -> None:
    app = create_app(ServerConfig(models_root=model_store))
    with TestClient(app, base_url="http://evil.example") as c:
        r = c.get("/api/version")
    assert r.status_code == 403 and r.headers["x-mfc-version"] == __version__


def test_cli_version() -> None:
    result = mfc("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mfc {__version__} (Ollama API {OLLAMA_API_VERSION})"
