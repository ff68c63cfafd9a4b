"""More vision families served: Idefics3 (SmolVLM's architecture) and Qwen2-VL, each built by
`mfc build` from its Hugging Face folder (mfc's converter writes the text model and the
projector layer) and answering (greedy) with exactly the tokens llama.cpp's own multimodal
path gives on the same GGUFs (the store's blobs). That those GGUFs are what llama.cpp's own
converter writes is tests/toolchain/convert/test_vision_convert.py's part: for Idefics3 and
Qwen2-VL the projector and the text model's tensors are identical; Gemma 3's tokenizer
types its added tokens as transformers does (listed there), so its prompts tokenize as
transformers' do where the reference's file would not.

They exercise the engine in shapes Gemma 3 (test_vision.py) does not: Idefics3 cuts an image
into tiles with text between them (`<fake_token_around_image><row_1_col_2>` ...); Qwen2-VL's
images take M-RoPE positions (a row and a column each, fewer positions than KV cells), which
libmtmd assigns, the text after an image going on from libmtmd's next position."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import MODELS
from tests.runtime.conftest import build_into, running_server
from tests.runtime.mtmd_reference import MARKER, MtmdReference
from tests.runtime.test_vision import b64, png

N = 12
GREEDY = {"temperature": 0, "num_predict": N, "num_ctx": 1024}
#: small (one tile / few patches), wide (2 x 1 tiles for Idefics3), tall
SMALL, WIDE, TALL = png(40, 30, 1), png(200, 90, 3), png(24, 48, 2)


@dataclass(frozen=True)
class Family:
    folder: str
    template: str  # the Modelfile's TEMPLATE
    user: str  # one user turn and the assistant's opening, `{}` for the content
    projector_type: str
    architecture: str

    def turn(self, text: str) -> str:
        return self.user.format(text)


FAMILIES = {
    "gemma3": Family(
        "tiny-gemma3-vision",
        "{{ range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>\n"
        "{{ end }}<start_of_turn>model\n",
        "<start_of_turn>user\n{}<end_of_turn>\n<start_of_turn>model\n",
        "gemma3",
        "gemma3",
    ),
    "idefics3": Family(
        "tiny-smolvlm",
        "{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "idefics3",
        "llama",
    ),
    "qwen2vl": Family(
        "tiny-qwen2vl",
        "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n",
        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        "qwen2vl_merger",
        "qwen2vl",
    ),
    "qwen25vl": Family(
        "tiny-qwen25vl",
        "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n",
        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        "qwen2.5vl_merger",
        "qwen2vl",
    ),
}


@dataclass
class Served:
    family: Family
    name: str
    url: str
    expected: dict[str, str]


def layers(store: Path, name: str) -> dict[str, Path]:
    """The blob of each layer of `name`'s manifest, by media type."""
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    return {
        layer["mediaType"].rsplit(".", 1)[-1]: store / "blobs" / layer["digest"].replace(":", "-")
        for layer in json.loads(manifest.read_text())["layers"]
    }


def _expected(family: Family, files: dict[str, Path]) -> dict[str, str]:
    """What llama.cpp answers, on the GGUFs mfc built and serves."""
    ref = MtmdReference(files["model"], files["projector"], n_ctx=1024)
    t = family.turn
    cases = {
        "small": (t(MARKER + "What is this?"), [SMALL]),
        "wide": (t(MARKER + "What is this?"), [WIDE]),
        "both": (t(MARKER + MARKER + "Compare"), [WIDE, TALL]),
        "text": (t("What is this?"), []),
        "openai": (t(MARKER + "\n\nWhat is this?"), [WIDE]),
    }
    try:
        return {k: ref.text(ref.greedy(p, imgs, N)) for k, (p, imgs) in cases.items()}
    finally:
        ref.close()


@pytest.fixture(scope="module")
def store(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    for key, family in FAMILIES.items():
        if not (MODELS / family.folder / "config.json").is_file():
            pytest.fail(f"fixture {family.folder} is missing: run `make fixtures`")
        modelfile = f'FROM {MODELS / family.folder}\nTEMPLATE """{family.template}"""\n'
        build_into(model_store, f"tiny-{key}", modelfile, tmp_path_factory.mktemp(key))
    return model_store


@pytest.fixture(scope="module")
def url(store: Path) -> Iterator[str]:
    with running_server(store, {"OLLAMA_NUM_PARALLEL": "2"}) as base:
        yield base


@pytest.fixture(scope="module", params=list(FAMILIES))
def served(request: pytest.FixtureRequest, url: str, store: Path) -> Served:
    family = FAMILIES[request.param]
    name = f"tiny-{request.param}"
    return Served(family, name, url, _expected(family, layers(store, name)))


def test_the_images_change_the_answer(served: Served) -> None:
    assert len(set(served.expected.values())) == len(served.expected), served.expected


def test_the_build_has_a_projector_layer(served: Served) -> None:
    shown = httpx.post(served.url + "/api/show", json={"model": served.name}).json()
    assert "vision" in shown["capabilities"]
    assert shown["projector_info"]["clip.projector_type"] == served.family.projector_type
    assert shown["model_info"]["general.architecture"] == served.family.architecture


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_ollama_client_matches_llama_cpp(served: Served, stream: bool) -> None:
    client: Any = ollama.Client(host=served.url)
    want = served.expected

    def text(result: Any, chat: bool) -> str:
        parts = result if stream else [result]
        return "".join(p.message.content if chat else p.response for p in parts)

    for key, image in (("small", SMALL), ("wide", WIDE)):
        got = client.generate(
            served.name, "What is this?", images=[image], options=GREEDY, stream=stream
        )
        assert text(got, False) == want[key], key
    messages = [{"role": "user", "content": "Compare", "images": [WIDE, TALL]}]
    got = client.chat(served.name, messages=messages, options=GREEDY, stream=stream)
    assert text(got, True) == want["both"]
    # the slot that held images answers a text-only prompt from the text before them
    got = client.generate(served.name, "What is this?", options=GREEDY, stream=stream)
    assert text(got, False) == want["text"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_matches_llama_cpp(served: Served, stream: bool) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused")
    content: Any = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(WIDE)}},
        {"type": "text", "text": "What is this?"},
    ]
    args: dict[str, Any] = {"model": served.name, "temperature": 0, "max_tokens": N}
    messages: Any = [{"role": "user", "content": content}]
    if stream:
        chunks = client.chat.completions.create(messages=messages, stream=True, **args)
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        got = client.chat.completions.create(messages=messages, **args).choices[0].message.content
    assert got == served.expected["openai"]


def test_parallel_requests_with_different_images(served: Served) -> None:
    """Two slots at once, different images (and, for Qwen2-VL, different position counts)."""
    from concurrent.futures import ThreadPoolExecutor

    client = ollama.Client(host=served.url)

    def ask(image: bytes) -> str:
        got = client.generate(served.name, "What is this?", images=[image], options=GREEDY)
        return str(got.response)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, [SMALL, WIDE, WIDE, SMALL]))
    want = served.expected
    assert answers == [want["small"], want["wide"], want["wide"], want["small"]]


def test_a_corrupt_image_is_400(served: Served) -> None:
    r = httpx.post(
        served.url + "/api/generate",
        timeout=60,
        json={
            "model": served.name,
            "prompt": "What?",
            "stream": False,
            "images": [b64(WIDE[:40] + b"\0" * 40)],
        },
    )
    assert r.status_code == 400 and "failed to process inputs" in r.json()["error"]


def test_m_rope_images_count_their_kv_cells_against_the_context(url: str) -> None:
    """A 448-pixel square is 16 x 16 merged patches for Qwen2-VL: 256 KV cells but only 16
    positions. At num_ctx 256 the prompt does not fit (llama.cpp would fail the decode),
    so it is refused with the reference's 400 instead of failing the slot; a small image
    still fits beside it."""
    body = {
        "model": "tiny-qwen2vl",
        "prompt": "What?",
        "stream": False,
        "options": {**GREEDY, "num_ctx": 256},
    }
    big = b64(png(448, 448, 4))
    r = httpx.post(url + "/api/generate", timeout=120, json={**body, "images": [big]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "input length exceeds the context length"
    r = httpx.post(url + "/api/generate", timeout=120, json={**body, "images": [b64(SMALL)]})
    assert r.status_code == 200, r.text
