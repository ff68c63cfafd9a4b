"""Error bodies and status codes, byte for byte as the reference sends them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

BODY_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def url(start_server: Callable[..., AbstractContextManager[str]]) -> Iterator[str]:
    with start_server({"MFC_MAX_REQUEST_BODY": str(BODY_LIMIT)}) as base:
        yield base


def call(
    url: str, method: str, path: str, body: bytes | str | None = None, **kw: object
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.request(method, url + path, content=content, timeout=120, **kw)  # type: ignore[arg-type]


def expect(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.content == ('{"error":' + _quote(message) + "}").encode()


def _quote(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


CASES = [
    # unknown and empty model names, per route
    ("POST", "/api/generate", '{"model":"nope","prompt":"hi"}', 404, "model 'nope' not found"),
    ("POST", "/api/chat", '{"model":"nope","messages":[]}', 404, "model 'nope' not found"),
    (
        "POST",
        "/api/embed",
        '{"model":"nope","input":"x"}',
        404,
        'model "nope" not found, try pulling it first',
    ),
    ("POST", "/api/show", '{"model":"nope"}', 404, "model 'nope:latest' not found"),
    ("POST", "/api/generate", '{"model":"","prompt":"hi"}', 404, "model '' not found"),
    ("POST", "/api/chat", '{"messages":[]}', 400, "model is required"),
    ("POST", "/api/embed", '{"input":"x"}', 404, "model '' not found"),
    ("POST", "/api/embeddings", '{"prompt":"x"}', 400, "model is required"),
    ("POST", "/api/show", "{}", 400, "model is required"),
    ("DELETE", "/api/delete", "{}", 400, "model is required"),
    ("POST", "/api/generate", '{"model":"a/b/c/d/e"}', 400, "invalid model name"),
    ("POST", "/api/chat", '{"model":"m:"}', 400, "invalid model name"),
    ("DELETE", "/api/delete", '{"model":"../x"}', 400, 'name "../x" is invalid'),
    (
        "POST",
        "/api/copy",
        '{"source":"a/b/c/d/e","destination":"x"}',
        400,
        'source "a/b/c/d/e" is invalid',
    ),
    (
        "POST",
        "/api/copy",
        '{"source":"demo","destination":"x:"}',
        400,
        'destination "x:" is invalid',
    ),
    ("POST", "/api/copy", '{"source":"nope","destination":"x"}', 404, 'model "nope" not found'),
    ("DELETE", "/api/delete", '{"model":"nope"}', 404, "model 'nope' not found"),
    # malformed bodies
    ("POST", "/api/generate", "", 400, "missing request body"),
    ("POST", "/api/generate", "{", 400, "unexpected EOF"),
    ("POST", "/api/generate", "x", 400, "invalid character 'x' looking for beginning of value"),
    (
        "POST",
        "/api/chat",
        '{"model":"demo",}',
        400,
        "invalid character '}' looking for beginning of object key string",
    ),
    # wrong field types
    (
        "POST",
        "/api/generate",
        '{"model":"demo","prompt":1}',
        400,
        "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string",
    ),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","options":[]}',
        400,
        "json: cannot unmarshal array into Go struct field GenerateRequest.options "
        "of type map[string]interface {}",
    ),
    (
        "POST",
        "/api/chat",
        '{"model":"demo","messages":[{"role":"user","content":["x"]}]}',
        400,
        "json: cannot unmarshal array into Go struct field ChatRequest.messages.content "
        "of type string",
    ),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","context":[1.5]}',
        400,
        "json: cannot unmarshal number 1.5 into Go struct field GenerateRequest.context "
        "of type int",
    ),
    # keep_alive
    (
        "POST",
        "/api/generate",
        '{"model":"demo","keep_alive":"300"}',
        400,
        'time: missing unit in duration "300"',
    ),
    ("POST", "/api/chat", '{"model":"demo","keep_alive":true}', 400, "Unsupported type: 'bool'"),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","keep_alive":"5 minutes"}',
        400,
        'time: unknown unit " minutes" in duration "5 minutes"',
    ),
    # request checks
    (
        "POST",
        "/api/generate",
        '{"model":"demo","prompt":"x","raw":true,"system":"s"}',
        400,
        "raw mode does not support template, system, or context",
    ),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","top_logprobs":21}',
        400,
        "top_logprobs must be between 0 and 20",
    ),
    (
        "POST",
        "/api/chat",
        '{"model":"demo","think":"very"}',
        400,
        'invalid think value: "very" (must be "high", "medium", "low", "max", true, or false)',
    ),
    ("POST", "/api/chat", '{"model":"demo","think":3}', 400, "think must be a boolean or string"),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","prompt":"x","think":true}',
        400,
        '"demo" does not support thinking',
    ),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","prompt":"x","suffix":"y"}',
        400,
        "registry.ollama.ai/library/demo:latest does not support insert",
    ),
    (
        "POST",
        "/api/generate",
        '{"model":"demo","prompt":"x","format":"xml","stream":false}',
        500,
        'invalid format: "xml"; expected "json" or a valid JSON Schema object',
    ),
    (
        "POST",
        "/api/chat",
        '{"model":"demo","messages":[{"role":"user","content":"x"}],"options":{"top_k":"many"}}',
        500,
        'option "top_k" must be of type integer',
    ),
    ("POST", "/api/embed", '{"model":"demo","input":[1]}', 400, "invalid input type"),
    # blobs
    ("HEAD", "/api/blobs/sha256:1234", None, 400, ""),
    ("POST", "/api/blobs/sha256-zz", "x", 400, "invalid digest format"),
    (
        "POST",
        "/api/blobs/sha256:" + "0" * 64,
        "hello",
        400,
        'digest mismatch, expected "sha256:' + "0" * 64 + '", got '
        '"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"',
    ),
    # create
    (
        "POST",
        "/api/create",
        '{"model":"x","files":{"/abs.gguf":"sha256:00"}}',
        400,
        "file path must be relative",
    ),
    ("POST", "/api/create", '{"model":"x"}', 400, "neither 'from' or 'files' was specified"),
    ("POST", "/api/create", '{"model":"bad:","from":"demo"}', 400, "invalid model name"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), CASES)
def test_error_bodies(
    url: str, method: str, path: str, body: str | None, status: int, message: str
) -> None:
    response = call(url, method, path, body)
    if method == "HEAD":
        assert response.status_code == status
        return
    expect(response, status, message)


def test_blob_head(url: str) -> None:
    missing = "sha256:" + "1" * 64
    response = call(url, "HEAD", f"/api/blobs/{missing}")
    assert response.status_code == 404
    response = call(url, "POST", f"/api/blobs/{missing}", "")
    expect(
        response,
        400,
        f'digest mismatch, expected "{missing}", got '
        '"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    )
    # the mismatching bytes were stored under their own digest, as the reference does
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert call(url, "HEAD", f"/api/blobs/{empty}").status_code == 200
    assert call(url, "POST", f"/api/blobs/{empty}", "").status_code == 200


def test_oversized_body(url: str) -> None:
    big = '{"model":"demo","prompt":"' + "x" * BODY_LIMIT + '"}'
    expect(call(url, "POST", "/api/generate", big), 413, "http: request body too large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"model":"demo","prompt":"'
        for _ in range(BODY_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = httpx.post(url + "/api/chat", content=chunks(), timeout=60)
    expect(response, 413, "http: request body too large")


def test_unknown_routes_and_methods(url: str) -> None:
    response = call(url, "GET", "/api/nope")
    assert (response.status_code, response.text) == (404, "404 page not found")
    response = call(url, "GET", "/api/generate")
    assert (response.status_code, response.text) == (405, "405 method not allowed")
    root = call(url, "GET", "/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert call(url, "HEAD", "/").status_code == 200
    version = call(url, "GET", "/api/version").json()
    assert set(version) == {"version"}


def test_cors_and_host_checks(url: str) -> None:
    ok = call(url, "GET", "/api/version", headers={"Origin": "http://localhost:3000"})
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"
    denied = call(url, "GET", "/api/version", headers={"Origin": "https://evil.example"})
    assert denied.status_code == 403
    preflight = call(
        url,
        "OPTIONS",
        "/v1/chat/completions",
        headers={
            "Origin": "vscode-webview://abc",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-stainless-os, x-secret",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == "content-type, x-stainless-os"
    assert call(url, "GET", "/", headers={"Host": "evil.example"}).status_code == 403
    assert call(url, "GET", "/", headers={"Host": "mybox.local:11434"}).status_code == 200


@pytest.mark.parametrize("path,body,answer", [
    ("/api/embed", '{"model":"demo","input":"hi %s"}', lambda r: r["embeddings"]),
    ("/v1/chat/completions",
     '{"model":"demo","messages":[{"role":"user","content":"hi %s"}],"max_tokens":3,'
     '"temperature":0}', lambda r: r["choices"][0]["message"]["content"]),
    ("/api/generate",
     '{"model":"demo","prompt":"hi","format":{"type":"object","properties":{"a%s":'
     '{"type":"string"}},"required":["a\\ufffd"]},"options":{"num_predict":4,"temperature":0},'
     '"stream":false}', lambda r: r["response"]),
])  # fmt: skip
def test_lone_surrogates_are_u_fffd(
    url: str, path: str, body: str, answer: Callable[[dict[str, object]], object]
) -> None:
    """Go's decoder turns a lone surrogate escape into U+FFFD, so a request with `\\ud800`
    gets the answer the same request with `\\ufffd` gets (it used to be a 500: Python kept
    the surrogate and encoding the prompt failed)."""
    lone = call(url, "POST", path, body % "\\ud800")
    replaced = call(url, "POST", path, body % "\\ufffd")
    assert lone.status_code == replaced.status_code == 200, lone.text
    assert answer(lone.json()) == answer(replaced.json())
