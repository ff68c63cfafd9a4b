"""A second vision family served: Idefics3 (SmolVLM's architecture), built by `mfc build` from
the Hugging Face folder (mfc's converter writes the text model and the projector layer) and
answering (greedy) with exactly the tokens llama.cpp's own multimodal path gives on the GGUFs
llama.cpp's converter writes for the same checkpoint. Its images are cut into tiles with
text between them (`<fake_token_around_image><row_1_col_2>` ...), unlike Gemma 3's one block
of embeddings, so the engine's chunk handling is exercised in another shape."""

from __future__ import annotations

from collections.abc import Iterator
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

HF = MODELS / "tiny-smolvlm"
GGUFS = MODELS / "tiny-smolvlm-gguf"
TEMPLATE = (
    "{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
N = 12
GREEDY = {"temperature": 0, "num_predict": N, "num_ctx": 1024}
#: one 64-pixel tile plus the overview; 2 x 1 tiles plus the overview; a tall one
SMALL, WIDE, TALL = png(40, 30, 1), png(200, 90, 3), png(24, 48, 2)


def turn(text: str) -> str:
    return f"<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>" \
        "<|start_header_id|>assistant<|end_header_id|>\n\n"


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    """What llama.cpp answers, on its own converter's GGUFs."""
    if not (GGUFS / "mmproj.gguf").is_file() or not (HF / "config.json").is_file():
        pytest.fail(f"fixtures {HF} / {GGUFS} are missing: run `make fixtures`")
    ref = MtmdReference(GGUFS / "text.gguf", GGUFS / "mmproj.gguf", n_ctx=1024)
    cases = {
        "small": (turn(MARKER + "What is this?"), [SMALL]),
        "wide": (turn(MARKER + "What is this?"), [WIDE]),
        "both": (turn(MARKER + MARKER + "Compare"), [WIDE, TALL]),
        "text": (turn("What is this?"), []),
        "openai": (turn(MARKER + "\n\nWhat is this?"), [WIDE]),
    }
    try:
        return {k: ref.text(ref.greedy(p, imgs, N)) for k, (p, imgs) in cases.items()}
    finally:
        ref.close()


@pytest.fixture(scope="module")
def smolvlm_server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    modelfile = f'FROM {HF}\nTEMPLATE """{TEMPLATE}"""\n'
    build_into(model_store, "tinysmolvlm", modelfile, tmp_path_factory.mktemp("smolvlm"))
    with running_server(model_store) as url:
        yield url


def test_the_images_change_the_answer(expected: dict[str, str]) -> None:
    assert len(set(expected.values())) == len(expected), expected


def test_the_build_has_a_projector_layer(smolvlm_server: str) -> None:
    shown = httpx.post(smolvlm_server + "/api/show", json={"model": "tinysmolvlm"}).json()
    assert "vision" in shown["capabilities"]
    assert shown["projector_info"]["clip.projector_type"] == "idefics3"
    manifest = ollama.Client(host=smolvlm_server).show("tinysmolvlm")
    assert manifest.modelinfo is not None and manifest.modelinfo["general.architecture"] == "llama"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_ollama_client_matches_llama_cpp(
    smolvlm_server: str, expected: dict[str, str], stream: bool
) -> None:
    client: Any = ollama.Client(host=smolvlm_server)

    def text(result: Any, chat: bool) -> str:
        parts = result if stream else [result]
        return "".join(p.message.content if chat else p.response for p in parts)

    for key, image in (("small", SMALL), ("wide", WIDE)):
        got = client.generate("tinysmolvlm", "What is this?", images=[image], options=GREEDY,
                              stream=stream)
        assert text(got, False) == expected[key], key
    messages = [{"role": "user", "content": "Compare", "images": [WIDE, TALL]}]
    got = client.chat("tinysmolvlm", messages=messages, options=GREEDY, stream=stream)
    assert text(got, True) == expected["both"]
    got = client.generate("tinysmolvlm", "What is this?", options=GREEDY, stream=stream)
    assert text(got, False) == expected["text"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_sdk_matches_llama_cpp(
    smolvlm_server: str, expected: dict[str, str], stream: bool
) -> None:
    client = openai.OpenAI(base_url=f"{smolvlm_server}/v1", api_key="unused")
    content: Any = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(WIDE)}},
        {"type": "text", "text": "What is this?"},
    ]
    args: dict[str, Any] = {"model": "tinysmolvlm", "temperature": 0, "max_tokens": N}
    messages: Any = [{"role": "user", "content": content}]
    if stream:
        chunks = client.chat.completions.create(messages=messages, stream=True, **args)
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        got = client.chat.completions.create(messages=messages, **args).choices[0].message.content
    assert got == expected["openai"]


def test_a_corrupt_image_is_400(smolvlm_server: str) -> None:
    r = httpx.post(smolvlm_server + "/api/generate", timeout=60, json={
        "model": "tinysmolvlm", "prompt": "What?", "stream": False,
        "images": [b64(WIDE[:40] + b"\0" * 40)]})
    assert r.status_code == 400 and "failed to process inputs" in r.json()["error"]
