"""The reference's digests (store_api.md §5) reproduced by our Go-JSON encoder and writers."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from toolchain.gojson import GoStruct, decode_any, encode
from toolchain.store import mediatypes
from toolchain.store.config import ModelConfig
from toolchain.store.errors import StoreError
from toolchain.store.manifest import Layer, Manifest


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_config_blob_for_arch_test() -> None:
    config = ModelConfig().with_model_layer("test", parameter_count=0, file_type=0)
    data = config.encode()
    assert data == (
        b'{"model_format":"gguf","model_family":"test","model_families":["test"],'
        b'"model_type":"0","file_type":"unknown","architecture":"amd64","os":"linux"}\n'
    )
    assert len(data) == 147
    assert sha(data) == "sha256:99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"


@pytest.mark.parametrize(
    ("text", "digest"),
    [
        ("{{ .Prompt }}", "b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315"),
        (
            "{{ .System }} {{ .Prompt }}",
            "fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed",
        ),
        ("Say hi!", "f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"),
        ("Say bye!", "4c5f51faac758fecaff8db42f0b7382891a4d0c0bb885f7b86be88c814a7cc86"),
        ("Apache-2.0", "2af71558e438db0b73a20beab92dc278a94e1bbe974c00c1a33e3ab62d53a608"),
    ],
)
def test_text_layers_are_raw_bytes(text: str, digest: str) -> None:
    assert sha(text.encode()) == "sha256:" + digest


def test_mit_license_digest_prefix() -> None:
    digest = sha(b"MIT")
    assert digest.startswith("sha256:e5dcffe8") and digest.endswith("3b7")


@pytest.mark.parametrize(
    ("params", "digest"),
    [
        (
            {"temperature": 1.0, "top_k": 10.0, "stop": ["USER:", "ASSISTANT:"]},
            "1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37",
        ),
        (
            {"stop": ["USER:", "ASSISTANT:"], "temperature": 0.6, "top_k": 10.0, "top_p": 0.7},
            "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba",
        ),
        (
            {"stop": ["<|endoftext|>"], "temperature": 0.6, "top_k": 10.0, "top_p": 0.7},
            "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35",
        ),
    ],
)
def test_params_digests(params: dict[str, object], digest: str) -> None:
    assert sha(encode(params)) == "sha256:" + digest


def test_params_bytes_are_exact() -> None:
    assert encode({"stop": ["<|endoftext|>"], "top_p": 0.7, "temperature": 0.6, "top_k": 10.0}) == (
        b'{"stop":["\\u003c|endoftext|\\u003e"],"temperature":0.6,"top_k":10,"top_p":0.7}\n'
    )


def test_messages_digest() -> None:
    messages = [
        GoStruct(role="assistant", content="What is my purpose?"),
        GoStruct(role="user", content="You run tests."),
        GoStruct(role="assistant", content="Oh, my god."),
    ]
    assert (
        sha(encode(messages))
        == "sha256:298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"
    )


def test_phi3_params_digest_prefix() -> None:
    data = encode(GoStruct(stop=["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]))
    assert data == (
        b'{"stop":["\\u003c|end|\\u003e","\\u003c|system|\\u003e","\\u003c|user|\\u003e",'
        b'"\\u003c|assistant|\\u003e"]}\n'
    )
    assert sha(data).startswith("sha256:0d79f567") and sha(data).endswith("3cc5")


def test_manifest_bytes_follow_struct_order() -> None:
    config = Layer(mediatypes.CONFIG, "sha256:" + "9" * 64, 147)
    layers = (
        Layer(mediatypes.MODEL, "sha256:" + "8" * 64, 1234, from_="test.gguf"),
        Layer(mediatypes.TEMPLATE, "sha256:" + "b" * 64, 13),
    )
    data = Manifest(config=config, layers=layers).encode()
    assert data == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:'
        + b"9"
        * 64
        + b'","size":147},"layers":[{"mediaType":"application/vnd.ollama.image.model",'
        b'"digest":"sha256:'
        + b"8"
        * 64
        + b'","size":1234,"from":"test.gguf"},{"mediaType":"application/vnd.ollama.image.template",'
        b'"digest":"sha256:' + b"b" * 64 + b'","size":13}]}\n'
    )
    assert Manifest.parse(data).encode() == data


def test_decode_any_reencodes_like_go() -> None:
    # Go decodes every number into float64: a big integer loses precision the same way
    assert encode(decode_any(b'{"seed":12345678901234567,"top_k":10}')) == (
        b'{"seed":12345678901234568,"top_k":10}\n'
    )


def _manifest(schema: int = 2, digest: str = "sha256:" + "a" * 64, size: int = 5) -> bytes:
    layer = {"mediaType": mediatypes.MODEL, "digest": digest, "size": size}
    return json.dumps({"schemaVersion": schema, "config": layer, "layers": [layer]}).encode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_manifest(schema=1), "unsupported schemaVersion 1"),
        (_manifest(digest="sha256:" + "A" * 64), "unsupported blob digest 'sha256:AAAA"),
        (_manifest(digest="sha256-" + "a" * 64), "unsupported blob digest 'sha256-aaaa"),
        (_manifest(digest="sha512:" + "a" * 128), "unsupported blob digest 'sha512:"),
        (_manifest(digest="sha256:../../x"), "unsupported blob digest"),
        (_manifest(size=-1), "has a negative size"),
    ],
)
def test_a_manifest_from_elsewhere_must_name_blobs_the_store_can_hold(
    data: bytes, problem: str
) -> None:
    with pytest.raises(StoreError, match=re.escape(problem)):
        Manifest.parse(data).validate()


def test_a_valid_manifest_validates() -> None:
    manifest = Manifest.parse(_manifest())
    assert manifest.validate() is manifest
