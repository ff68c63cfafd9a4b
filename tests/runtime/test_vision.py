"""Vision models served by mfc: a model whose manifest has a projector layer sees the images
of /api/generate, /api/chat and /v1/chat/completions, and answers (greedy) with exactly the
tokens llama.cpp's own multimodal path (libmtmd, in-process) gives for the same GGUFs, prompt
and image; bad images and too many images are refused with a 400."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import MODELS
from tests.runtime.conftest import build_into, mfc, running_server
from tests.runtime.mtmd_reference import MARKER, MtmdReference

GGUFS = MODELS / "tiny-gemma3-vision-gguf"
TEMPLATE = (
    "{{ range .Messages }}<start_of_turn>{{ .Role }}\n{{ .Content }}<end_of_turn>\n"
    "{{ end }}<start_of_turn>model\n"
)
N = 12
GREEDY = {"temperature": 0, "num_predict": N, "num_ctx": 512}


def png(width: int, height: int, seed: int) -> bytes:
    """An RGB PNG whose pixels depend on `seed` (written by hand: no imaging library)."""

    def row(y: int) -> bytes:
        values = ((x * x * (seed + 3) + (13 * y + 31) * seed) % 256 for x in range(3 * width))
        return b"\0" + bytes(values)

    rows = b"".join(row(y) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


CAT, DOG = png(40, 30, 1), png(24, 48, 2)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def turn(text: str) -> str:
    return f"<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n"


@pytest.fixture(scope="module")
def reference() -> Iterator[MtmdReference]:
    if not (GGUFS / "mmproj.gguf").is_file():
        pytest.fail(f"fixture {GGUFS} is missing: run `make fixtures`")
    ref = MtmdReference(GGUFS / "text.gguf", GGUFS / "mmproj.gguf", n_ctx=512)
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def expected(reference: MtmdReference) -> dict[str, str]:
    """What llama.cpp answers to each prompt this module sends."""
    cases = {
        "cat": (turn(MARKER + "What is this?"), [CAT]),
        "dog": (turn(MARKER + "What is this?"), [DOG]),
        "both": (turn(MARKER + MARKER + "Compare"), [CAT, DOG]),
        "placed": (turn("Look: " + MARKER + " now"), [DOG]),
        "text": (turn("What is this?"), []),
        # the template joins consecutive messages of one role with a blank line
        "openai": (turn(MARKER + "\n\nWhat is this?"), [DOG]),
    }
    return {k: reference.text(reference.greedy(p, imgs, N)) for k, (p, imgs) in cases.items()}


@pytest.fixture(scope="module")
def vision_server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    modelfile = (
        f"FROM {GGUFS / 'text.gguf'}\nFROM {GGUFS / 'mmproj.gguf'}\n"
        f'TEMPLATE """{TEMPLATE}"""\nPARAMETER temperature 0\nPARAMETER num_predict {N}\n'
    )
    build_into(model_store, "tinyvision", modelfile, tmp_path_factory.mktemp("vision"))
    with running_server(model_store, {"OLLAMA_NUM_PARALLEL": "2"}) as url:
        yield url


def test_the_images_change_the_answer(expected: dict[str, str]) -> None:
    """Otherwise the comparisons below could not tell an image from no image."""
    assert len(set(expected.values())) == len(expected), expected


def test_show_lists_vision_and_the_projector(vision_server: str, model_store: Path) -> None:
    """`vision` exactly for the model with a projector; the projector's metadata as the
    reference's `projector_info` and `mfc show`'s Projector table."""
    client = ollama.Client(host=vision_server)
    shown = client.show("tinyvision")
    assert "vision" in (shown.capabilities or [])
    assert "vision" not in (client.show("demo").capabilities or [])
    info = httpx.post(vision_server + "/api/show", json={"model": "tinyvision"}).json()
    projector = info["projector_info"]
    assert projector["general.architecture"] == "clip"
    assert projector["clip.vision.embedding_length"] == 32  # the fixture's SigLIP width
    assert projector["clip.vision.projection_dim"] == 64  # the text model's width
    plain = httpx.post(vision_server + "/api/show", json={"model": "demo"}).json()
    assert "projector_info" not in plain
    text = mfc("show", "tinyvision", env={"MFC_MODELS": str(model_store)}).stdout
    table = text[text.index("Projector") :].splitlines()
    assert table[1].split() == ["architecture", "clip"]
    assert ["embedding", "length", "32"] in [row.split() for row in table[2:5]]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_ollama_generate_and_chat_match_llama_cpp(
    vision_server: str, expected: dict[str, str], stream: bool
) -> None:
    client: Any = ollama.Client(host=vision_server)  # `stream` is no literal here

    def text(result: Any, chat: bool) -> str:
        parts = result if stream else [result]
        return "".join(p.message.content if chat else p.response for p in parts)

    got = client.generate(
        "tinyvision", "What is this?", images=[CAT], options=GREEDY, stream=stream
    )
    assert text(got, False) == expected["cat"]
    messages = [{"role": "user", "content": "What is this?", "images": [DOG]}]
    got = client.chat("tinyvision", messages=messages, options=GREEDY, stream=stream)
    assert text(got, True) == expected["dog"]
    messages = [{"role": "user", "content": "Compare", "images": [CAT, DOG]}]
    got = client.chat("tinyvision", messages=messages, options=GREEDY, stream=stream)
    assert text(got, True) == expected["both"]
    # `[img]` in the content places the image there (the reference's tagging)
    messages = [{"role": "user", "content": "Look: [img] now", "images": [DOG]}]
    got = client.chat("tinyvision", messages=messages, options=GREEDY, stream=stream)
    assert text(got, True) == expected["placed"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_image_url_matches_llama_cpp(
    vision_server: str, expected: dict[str, str], stream: bool
) -> None:
    client = openai.OpenAI(base_url=f"{vision_server}/v1", api_key="unused")
    content: Any = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(DOG)}},
        {"type": "text", "text": "What is this?"},
    ]
    # each content part is its own message in the reference: image first, then the text
    args: dict[str, Any] = {"model": "tinyvision", "temperature": 0, "max_tokens": N}
    messages: Any = [{"role": "user", "content": content}]
    if stream:
        chunks = client.chat.completions.create(messages=messages, stream=True, **args)
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        got = client.chat.completions.create(messages=messages, **args).choices[0].message.content
    assert got == expected["openai"]


def test_run_attaches_the_image_files_a_prompt_names(
    vision_server: str, expected: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "cat.png").write_bytes(CAT)
    host = vision_server.removeprefix("http://")
    env = {"MFC_HOST": host, "OLLAMA_HOST": host}
    ran = mfc("run", "tinyvision", f"What is this? {tmp_path / 'cat.png'}", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["message"]["content"] == expected["cat"]
    assert f"Added image '{tmp_path / 'cat.png'}'" in ran.stderr
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    bad = mfc("run", "tinyvision", f"What is this? {tmp_path / 'fake.png'}", env=env)
    assert bad.returncode == 1 and "invalid image type" in bad.stderr


def test_a_jpeg_matches_llama_cpp(vision_server: str, reference: MtmdReference) -> None:
    """A real photograph (scikit-learn's sample JPEG, 640x427) through /api/chat."""
    sklearn = pytest.importorskip("sklearn")
    photo = (Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg").read_bytes()
    want = reference.text(reference.greedy(turn(MARKER + "What is this?"), [photo], N))
    messages = [{"role": "user", "content": "What is this?", "images": [photo]}]
    got = ollama.Client(host=vision_server).chat("tinyvision", messages=messages, options=GREEDY)
    assert got.message.content == want


def test_chat_truncation_counts_the_images(vision_server: str, reference: MtmdReference) -> None:
    """Fitting a chat into num_ctx counts each image as the reference estimates it (16
    positions for this projector: 64/8 patches a side, pooled by 2): at num_ctx 120 the
    text alone (95 tokens) would fit and the engine then refuse 161 positions; counted, the
    oldest message goes and the answer is llama.cpp's for what remains."""
    from runtime.vision import image_tokens

    assert image_tokens(str(GGUFS / "mmproj.gguf")) == 16
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Old picture", "images": [CAT]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "What is this?", "images": [DOG]},
    ]
    options = {**GREEDY, "num_ctx": 120}
    got = ollama.Client(host=vision_server).chat("tinyvision", messages=messages, options=options)
    kept = "<start_of_turn>assistant\nok<end_of_turn>\n" + turn(MARKER + "What is this?")
    assert got.message.content == reference.text(reference.greedy(kept, [DOG], N))


def test_a_text_request_after_an_image_reuses_only_the_text_before_it(
    vision_server: str, expected: dict[str, str]
) -> None:
    """The slot that just saw an image shares the prompt's opening tokens with a text-only
    request: only those may be reused, never the image's positions."""
    client = ollama.Client(host=vision_server)
    for images in ([CAT], None, [DOG], None):
        got = client.generate("tinyvision", "What is this?", images=images, options=GREEDY)
        assert got.response == expected["dog" if images == [DOG] else "cat" if images else "text"]


def test_parallel_requests_with_different_images_each_get_their_own_answer(
    vision_server: str, expected: dict[str, str]
) -> None:
    """Two slots, different images, at once, then again (cached prefixes must not leak)."""
    client = ollama.Client(host=vision_server)

    def ask(image: bytes) -> str:
        got = client.generate("tinyvision", "What is this?", images=[image], options=GREEDY)
        return str(got.response)

    with ThreadPoolExecutor(2) as pool:
        for _ in range(2):
            answers = list(pool.map(ask, [CAT, DOG, DOG, CAT]))
            assert answers == [expected["cat"], expected["dog"], expected["dog"], expected["cat"]]


BAD: dict[str, tuple[Any, str]] = {
    "not-an-image": (b64(b"GIF89a not what we take"), "image: unknown format"),
    "text": (b64(b"hello world, not an image"), "image: unknown format"),
    "bad-base64": ("%%%not base64%%%", "illegal base64 data at input byte 0"),
    "corrupt-png": (b64(CAT[:40] + b"\0" * 40), "failed to process inputs"),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", BAD)
def test_bad_images_are_400(vision_server: str, case: str, stream: bool) -> None:
    image, message = BAD[case]
    for path, body in (
        ("/api/generate", {"prompt": "What?", "images": [image]}),
        ("/api/chat", {"messages": [{"role": "user", "content": "What?", "images": [image]}]}),
    ):
        r = httpx.post(
            vision_server + path,
            json={"model": "tinyvision", "stream": stream, "options": GREEDY, **body},
            timeout=60,
        )
        assert r.status_code == 400, (path, r.text)
        assert message in r.json()["error"]


def test_too_many_images_are_400(vision_server: str) -> None:
    from runtime.vision import MAX_IMAGES

    images = [b64(CAT)] * (MAX_IMAGES + 1)
    r = httpx.post(
        vision_server + "/api/chat",
        json={
            "model": "tinyvision",
            "stream": False,
            "messages": [{"role": "user", "content": "What?", "images": images}],
        },
        timeout=60,
    )
    assert r.status_code == 400
    assert r.json() == {"error": f"too many images: at most {MAX_IMAGES} per request"}
