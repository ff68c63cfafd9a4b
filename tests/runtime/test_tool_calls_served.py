# ruff: noqa: E501
"""A Qwen2.5-style template (`{{- else if .ToolCalls }}<tool_call>`) end to end: the model's
`<tool_call>...</tool_call>` comes back as a parsed call with empty content on /api/chat
and /v1/chat/completions, streamed and not, and the next turn's prompt shows the call.

The server runs in this process so the model's output can be pinned: a grammar that
admits only one text replaces the request's sampling grammar, and SmolLM2 (real weights,
real tokenizer, llama.cpp decoding) writes exactly that call, token by token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import runtime.generation
from fixtures.local_server import free_port
from runtime.config import ServerConfig
from runtime.openai_requests import chat_messages
from runtime.options import Options
from runtime.sampling import SamplingSpec
from runtime.server import bind, make_server
from tests.runtime.conftest import DEMO_MODELFILE, build_into
from toolchain.prompt import render_prompt
from toolchain.store import Store

QWEN25 = """{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
OUTPUT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>'
ASK = [{"role": "user", "content": "What is the weather in Tokyo?"}]
OPTIONS = {"temperature": 0, "num_predict": 60}


def only(text: str) -> str:
    """A GBNF grammar admitting exactly `text`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'root ::= "{escaped}"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[str]:
    store = tmp_path_factory.mktemp("qwen-store")
    modelfile = DEMO_MODELFILE.format(gguf=smollm2_gguf, template=QWEN25)
    build_into(store, "qwen-tools", modelfile, tmp_path_factory.mktemp("qwen"))
    # no TEMPLATE: the GGUF's chat template is detected as the bundled chatml
    build_into(store, "smol-detected", f"FROM {smollm2_gguf}\n", tmp_path_factory.mktemp("smol"))
    pinned = only(OUTPUT)
    real = runtime.generation.sampling_for

    def pinned_sampling(opts: Options, grammar: str | None) -> SamplingSpec:
        return real(opts, pinned)

    config = ServerConfig(host="127.0.0.1", port=free_port())
    uv = make_server(config, Store(store))
    sock = bind(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime.generation, "sampling_for", pinned_sampling)
        thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        try:
            yield config.base_url
        finally:
            uv.should_exit = True
            thread.join(30)
            sock.close()


def calls_of(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []
    ]


WANT = [("get_weather", {"city": "Tokyo"})]


def test_api_chat(server: str) -> None:
    body = {"model": "qwen-tools", "messages": ASK, "tools": [WEATHER], "options": OPTIONS}
    whole = httpx.post(server + "/api/chat", json={**body, "stream": False}, timeout=300).json()
    assert whole["message"]["content"] == ""
    assert calls_of(whole["message"]) == WANT
    assert whole["message"]["tool_calls"][0]["function"]["index"] == 0
    assert whole["eval_count"] > 5  # the call came out of the model token by token
    with httpx.stream("POST", server + "/api/chat", json=body, timeout=300) as r:
        parts = [json.loads(line) for line in r.iter_lines() if line]
    assert parts[-1]["done"] and not any(p["done"] for p in parts[:-1])
    assert all(p["message"]["content"] == "" for p in parts)
    assert [c for p in parts for c in calls_of(p["message"])] == WANT


def test_openai_chat(server: str) -> None:
    client = openai.OpenAI(base_url=server + "/v1", api_key="unused")
    args: dict[str, Any] = {"model": "qwen-tools", "messages": ASK, "tools": [WEATHER],
                            "temperature": 0, "max_tokens": 60}  # fmt: skip
    choice = client.chat.completions.create(**args).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == ""
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}
    chunks = list(client.chat.completions.create(**args, stream=True))
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    assert "".join(d.content or "" for d in deltas) == ""
    streamed = [c for d in deltas for c in (d.tool_calls or [])]
    assert [(c.function.name, json.loads(c.function.arguments or "")) for c in streamed] == [
        ("get_weather", {"city": "Tokyo"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # the next turn, as an OpenAI client sends it, renders the call the template's way
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"}]  # fmt: skip
    prompt = render_prompt(QWEN25, messages=chat_messages(history), tools=[WEATHER])
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
            '{"city":"Tokyo"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n'
            "Sunny, 21C\n</tool_response><|im_end|>\n<|im_start|>assistant\n") in prompt  # fmt: skip
    follow = client.chat.completions.create(**{**args, "messages": history})
    assert follow.choices[0].message.tool_calls


def test_next_turn_prompt_shows_the_call(server: str) -> None:
    body = {"model": "qwen-tools", "messages": ASK, "tools": [WEATHER], "options": OPTIONS,
            "stream": False}  # fmt: skip
    answer = httpx.post(server + "/api/chat", json=body, timeout=300).json()["message"]
    history = [*ASK, answer, {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 21C"}]
    debug = httpx.post(server + "/api/chat", json={**body, "messages": history,
                                                   "_debug_render_only": True}, timeout=60)  # fmt: skip
    rendered = debug.json()["_debug_info"]["rendered_template"]
    assert rendered.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city":"Tokyo"}}\n'
        "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nSunny, 21C\n</tool_response>"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_detected_chatml_delivers_the_tools_it_advertises(server: str) -> None:
    """SmolLM2's own chat template is detected as chatml, which takes tools; a Hermes-style
    `<tool_call>` answer then comes back as a call, not as text."""
    shown = httpx.post(server + "/api/show", json={"model": "smol-detected"}, timeout=60).json()
    assert "tools" in shown["capabilities"]
    body = {"model": "smol-detected", "messages": ASK, "tools": [WEATHER], "options": OPTIONS,
            "stream": False}  # fmt: skip
    answer = httpx.post(server + "/api/chat", json=body, timeout=300).json()["message"]
    assert answer["content"] == ""
    assert calls_of(answer) == WANT
