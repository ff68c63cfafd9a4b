"""The official `ollama` Python package against a live `mfc serve`: every call it makes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import ollama
import pytest

from tests.runtime.conftest import CHATML_TOOLS

FAST = {"seed": 7, "num_predict": 24, "temperature": 0}
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def client(server: str) -> ollama.Client:
    return ollama.Client(host=server)


def test_list_and_show(client: ollama.Client) -> None:
    models = client.list().models
    demo = next(m for m in models if m.model == "demo:latest")
    assert demo.size and len(demo.digest or "") == 64
    assert demo.details is not None and demo.details.family == "llama"
    assert demo.details.quantization_level == "Q4_1"
    shown = client.show("demo")
    assert shown.template is not None and "<|im_start|>" in shown.template
    assert (
        shown.parameters is not None
        and 'stop                           "<|im_end|>"' in shown.parameters
    )
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities == ["completion"]
    with pytest.raises(ollama.ResponseError) as err:
        client.show("missing-model")
    assert err.value.status_code == 404
    assert err.value.error == "model 'missing-model:latest' not found"


def test_generate_stream_and_not(client: ollama.Client) -> None:
    whole = client.generate("demo", QUESTION, options=FAST)
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.response.strip()
    assert whole.eval_count and whole.prompt_eval_count and whole.total_duration
    assert whole.eval_duration and whole.prompt_eval_duration and whole.load_duration
    assert whole.context and len(whole.context) >= whole.prompt_eval_count
    parts = list(client.generate("demo", QUESTION, options=FAST, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    # the same seed and options give the same answer, streamed or not
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].eval_count == whole.eval_count


def test_generate_options_shape_the_answer(client: ollama.Client) -> None:
    short = client.generate("demo", QUESTION, options={**FAST, "num_predict": 3})
    assert short.done_reason == "length" and short.eval_count == 3
    cut = client.generate("demo", QUESTION, options={**FAST, "stop": ["Paris"]})
    assert "Paris" not in cut.response
    raw = client.generate(
        "demo", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", raw=True, options=FAST
    )
    assert raw.response and raw.context is None
    follow = client.generate("demo", "And of Germany?", context=short.context, options=FAST)
    assert follow.prompt_eval_count and follow.prompt_eval_count > len(short.context or [])


def test_chat_stream_and_not(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat("demo", messages=messages, options=FAST)
    assert whole.message.role == "assistant" and whole.message.content.strip()
    assert whole.done and whole.eval_count
    parts = list(client.chat("demo", messages=messages, options=FAST, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].done_reason == whole.done_reason
    # history: a follow-up turn sees the earlier answer
    history = [
        *messages,
        {"role": "assistant", "content": whole.message.content},
        {"role": "user", "content": "Repeat that."},
    ]
    again = client.chat("demo", messages=history, options=FAST)
    assert again.prompt_eval_count and again.prompt_eval_count > (whole.prompt_eval_count or 0)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["get_weather"]},
        "arguments": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Tokyo"]}},
            "required": ["city"],
        },
    },
    "required": ["name", "arguments"],
}


def test_create_from_model_then_chat_with_tools(client: ollama.Client) -> None:
    done = client.create("smol-tools", from_="demo", template=CHATML_TOOLS, system="Use tools.")
    assert done.status == "success"
    shown = client.show("smol-tools")
    assert shown.capabilities is not None and "tools" in shown.capabilities
    ask = [{"role": "user", "content": "What is the weather in Tokyo?"}]
    # the grammar makes the model write exactly one call, which comes back as tool_calls
    answer = client.chat(
        "smol-tools",
        messages=ask,
        tools=[WEATHER],
        format=CALL_SCHEMA,
        options={**FAST, "num_predict": 40},
    )
    calls = answer.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert dict(calls[0].function.arguments) == {"city": "Tokyo"}
    assert answer.message.content == ""
    streamed = list(
        client.chat(
            "smol-tools",
            messages=ask,
            tools=[WEATHER],
            format=CALL_SCHEMA,
            options={**FAST, "num_predict": 40},
            stream=True,
        )
    )
    found = [c for p in streamed for c in (p.message.tool_calls or [])]
    assert [(c.function.name, dict(c.function.arguments)) for c in found] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    # a tool result goes back through the template
    reply = client.chat(
        "smol-tools",
        messages=[
            *ask,
            answer.message,
            {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 21C"},
        ],
        options=FAST,
    )
    assert reply.message.content.strip()
    # tools on a model whose template has no .Tools
    with pytest.raises(ollama.ResponseError) as err:
        client.chat("demo", messages=ask, tools=[WEATHER])
    assert err.value.status_code == 400
    assert err.value.error == "registry.ollama.ai/library/demo:latest does not support tools"


def test_embed_one_and_many(client: ollama.Client) -> None:
    one = client.embed("demo", input="The cat sat on the mat.")
    assert len(one.embeddings) == 1
    vec = np.array(one.embeddings[0])
    assert vec.shape == (576,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    many = client.embed(
        "demo", input=["The cat sat on the mat.", "Stock markets fell.", "A kitten sat on a rug."]
    )
    assert len(many.embeddings) == 3 and many.prompt_eval_count
    a, b, c = (np.array(e) for e in many.embeddings)
    assert np.allclose(a, vec, atol=1e-4)
    assert a @ c > a @ b  # the kitten is closer to the cat than the stock market is
    cut = client.embed("demo", input="The cat sat on the mat.", dimensions=64)
    assert len(cut.embeddings[0]) == 64 and abs(np.linalg.norm(cut.embeddings[0]) - 1) < 1e-5
    legacy = client.embeddings("demo", prompt="The cat sat on the mat.")
    raw = np.array(legacy.embedding)
    assert np.allclose(raw / np.linalg.norm(raw), vec, atol=1e-4)  # legacy: not normalised
    assert client.embed("demo", input="").embeddings == []


def test_ps_copy_delete(client: ollama.Client) -> None:
    client.generate("demo", "Hi", options={**FAST, "num_predict": 1}, keep_alive="10m")
    running = client.ps().models
    demo = next(m for m in running if m.model == "demo:latest")
    assert demo.context_length == 2048 and demo.expires_at is not None and demo.size
    assert client.copy("demo", "demo-copy").status == "success"
    assert any(m.model == "demo-copy:latest" for m in client.list().models)
    assert client.delete("demo-copy").status == "success"
    assert not any(m.model == "demo-copy:latest" for m in client.list().models)
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("demo-copy")
    assert (err.value.status_code, err.value.error) == (404, "model 'demo-copy' not found")
    # keep_alive 0 with an empty prompt unloads
    unloaded = client.generate("demo", "", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert not any(m.model == "demo:latest" for m in client.ps().models)


def test_create_from_an_uploaded_gguf(
    client: ollama.Client, smollm2_gguf: Path, tmp_path: Path
) -> None:
    digest = client.create_blob(smollm2_gguf)
    events = list(
        client.create(
            "from-file",
            files={"smollm2.gguf": digest},
            template="{{ .Prompt }}",
            system="Be brief.",
            parameters={"temperature": 0, "stop": ["\n"]},
            license=["MIT", "Apache-2.0"],
            stream=True,
        )
    )
    statuses = [e.status for e in events]
    assert statuses[0] == "parsing GGUF" and statuses[-2:] == ["writing manifest", "success"]
    shown = client.show("from-file")
    assert shown.modelfile is not None and "SYSTEM Be brief." in shown.modelfile
    assert shown.license == "MIT\nApache-2.0"
    assert shown.template == "{{ .Prompt }}"
    got = client.generate("from-file", "The capital of France is", options={"num_predict": 8})
    assert got.done
    # a small blob round trip through HEAD/POST /api/blobs
    blob = tmp_path / "notes.txt"
    blob.write_bytes(b"not a model")
    digest2 = client.create_blob(blob)
    with pytest.raises(ollama.ResponseError) as err:
        client.create("bad", files={"notes.gguf": digest2})
    assert err.value.status_code == 400
    client.delete("from-file")


def test_create_reports_bad_requests(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.create("x", from_="no-such-model")
    assert err.value.status_code in (400, 500) and "no-such-model" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        client.create("bad/name/x/y/z", from_="demo")
    assert (err.value.status_code, err.value.error) == (400, "invalid model name")


def test_chat_json_format(client: ollama.Client) -> None:
    ask = "Give a JSON object with the keys name and age of a cat."
    answer = client.chat(
        "demo",
        messages=[{"role": "user", "content": ask}],
        format="json",
        options={"seed": 1, "num_predict": 200},
    )
    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.message.content), dict)


def test_embed_matches_sentence_transformers(
    client: ollama.Client, minilm_model: str, minilm_dir: Path
) -> None:
    """all-MiniLM-L6-v2 converted and served gives the vectors sentence-transformers gives."""
    from sentence_transformers import SentenceTransformer

    texts = ["The cat sat on the mat.", "A kitten sat on a rug.", "Stock markets fell sharply."]
    ours = np.array(client.embed(minilm_model, input=texts).embeddings)
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts)
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert ours.shape == reference.shape == (3, 384)
    assert np.all(np.sum(ours * reference, axis=1) > 0.999)
    shown = client.show(minilm_model)
    assert shown.capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as err:
        client.generate(minilm_model, "Hi")
    assert (err.value.status_code, err.value.error) == (400, '"minilm" does not support generate')


ODD_JINJA = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}"
)


def test_rendered_prompts_and_the_jinja_fallback(client: ollama.Client, tmp_path: Path) -> None:
    """`_debug_render_only` shows the prompt; a GGUF template no named template matches is
    rendered with the model's own Jinja template."""
    from fixtures.tiny_gguf import write_tiny_model

    body = {
        "model": "demo",
        "messages": [{"role": "user", "content": "Hi"}],
        "_debug_render_only": True,
    }
    shown = client._request_raw("POST", "/api/chat", json=body).json()
    assert shown["done"] is False
    assert shown["_debug_info"] == {
        "rendered_template": "<|im_start|>system\nYou are a concise assistant. Answer in one or "
        "two sentences.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        "image_count": 0,
    }
    gguf = write_tiny_model(tmp_path / "odd.gguf", chat_template=ODD_JINJA)
    digest = client.create_blob(gguf)
    client.create("odd", files={"odd.gguf": digest})
    assert client.show("odd").template == "{{ .Prompt }}"  # no named template matched
    body = {
        "model": "odd",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
        "_debug_render_only": True,
    }
    rendered = client._request_raw("POST", "/api/chat", json=body).json()["_debug_info"]
    assert rendered["rendered_template"] == "[SYSTEM] S\n[USER] Hi\n[ASSISTANT]"
    client.delete("odd")


def test_suffix_fill_in_the_middle(client: ollama.Client) -> None:
    fim = (
        "{{ if .Suffix }}<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>{{ else }}{{ .Prompt }}{{ end }}"
    )
    client.create("fim", from_="demo", template=fim)
    assert "insert" in (client.show("fim").capabilities or [])
    body = {
        "model": "fim",
        "prompt": "def f(x):",
        "suffix": "    return y",
        "_debug_render_only": True,
    }
    shown = client._request_raw("POST", "/api/generate", json=body).json()
    assert shown["_debug_info"]["rendered_template"] == "<PRE>def f(x):<SUF>    return y<MID>"
    answer = client.generate("fim", "def f(x):", suffix="    return y", options=FAST)
    assert answer.done
    client.delete("fim")


def test_embed_truncation(client: ollama.Client, minilm_model: str) -> None:
    long_text = "word " * 2000  # far past all-MiniLM-L6-v2's 512 tokens
    cut = client.embed(minilm_model, input=long_text)
    assert len(cut.embeddings[0]) == 384 and cut.prompt_eval_count == 512
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(minilm_model, input=long_text, truncate=False)
    assert (err.value.status_code, err.value.error) == (
        400,
        "the input length exceeds the context length",
    )


def test_generation_ends_at_ten_contexts(client: ollama.Client, tiny_llama_model: str) -> None:
    """`num_predict` -1 (or past 10 x num_ctx) stops at 10 x num_ctx tokens, as the
    reference caps it: with context shifting, a model that never samples its end token
    would otherwise generate forever."""
    for num_predict in (-1, 100_000):
        out = client.generate(
            tiny_llama_model,
            "Hi",
            options={"num_ctx": 16, "num_predict": num_predict, "temperature": 0, "seed": 1},
        )
        assert (out.done_reason, out.eval_count) == ("length", 160)
    short = client.generate(tiny_llama_model, "Hi", options={"num_ctx": 16, "num_predict": 5})
    assert short.eval_count == 5
