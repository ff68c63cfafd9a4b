"""Pieces of the runtime that need no model: Go-exact decoding, durations, config, parsers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config import ServerConfig, parse_host
from runtime.durations import FOREVER, keep_alive_seconds, parse_go_duration
from runtime.errors import ApiError
from runtime.generation import ThinkingParser
from runtime.jsonbody import ANY, INT, STRING, decode, map_of, slice_of, struct
from runtime.options import DEFAULT_OPTIONS
from runtime.schemas import CHAT, GENERATE
from runtime.textstream import TextStream
from runtime.tools import ToolCallParser
from toolchain.store import Store

# Messages as Go 1.2x's encoding/json Decoder produces them for these bodies.
SYNTAX = [
    (b"", "missing request body"),
    (b"  \n", "missing request body"),
    (b"{", "unexpected EOF"),
    (b'{"model":"x"', "unexpected EOF"),
    (b"{model:1}", "invalid character 'm' looking for beginning of object key string"),
    (b'{"a" 1}', "invalid character '1' after object key"),
    (b'{"a":1 2}', "invalid character '2' after object key:value pair"),
    (b'{"a":[1 2]}', "invalid character '2' after array element"),
    (b'{"a":trx}', "invalid character 'x' in literal true (expecting 'u')"),
    (b'{"a":nul}', "invalid character '}' in literal null (expecting 'l')"),
    (b'{"a":"\\x"}', "invalid character 'x' in string escape code"),
    (b'{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"),
    (b'{"a":"\x01"}', "invalid character '\\x01' in string literal"),
    (b'{"a":-x}', "invalid character 'x' in numeric literal"),
    (b'{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
    (b'{"a":1e+}', "invalid character '}' in exponent of numeric literal"),
    (b"'x'", "invalid character '\\'' looking for beginning of value"),
    (b'{"a":01}', "invalid character '1' after object key:value pair"),
]


@pytest.mark.parametrize(("body", "message"), SYNTAX)
def test_syntax_errors_are_gos(body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as err:
        decode(body, GENERATE)
    assert (err.value.status, err.value.message) == (400, message)


TYPES = [
    (b'{"prompt":1}', "GenerateRequest.prompt of type string", "number"),
    (b'{"PROMPT":true}', "GenerateRequest.prompt of type string", "bool"),
    (b'{"context":[1,2.5]}', "GenerateRequest.context of type int", "number 2.5"),
    (b'{"options":"x"}', "GenerateRequest.options of type map[string]interface {}", "string"),
    (b'{"stream":"yes"}', "GenerateRequest.stream of type bool", "string"),
]


@pytest.mark.parametrize(("body", "where", "what"), TYPES)
def test_type_errors_name_the_go_field(body: bytes, where: str, what: str) -> None:
    with pytest.raises(ApiError) as err:
        decode(body, GENERATE)
    assert err.value.message == f"json: cannot unmarshal {what} into Go struct field {where}"


def test_nested_fields_use_the_full_path() -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}'
    with pytest.raises(ApiError) as err:
        decode(body, CHAT)
    assert err.value.message == (
        "json: cannot unmarshal array into Go struct field "
        "ChatRequest.messages.content of type string"
    )


def test_top_level_value_that_is_not_an_object() -> None:
    with pytest.raises(ApiError) as err:
        decode(b"[1]", GENERATE)
    assert (
        err.value.message
        == "json: cannot unmarshal array into Go value of type api.GenerateRequest"
    )


def test_lenient_binding() -> None:
    shape = struct("R", {"model": STRING, "n": INT, "m": map_of(ANY), "l": slice_of(STRING)})
    got = decode(b'{"MODEL":"x","n":null,"unknown":[1],"l":["a"]} trailing', shape)
    assert got == {"model": "x", "l": ["a"]}
    assert decode(b"null", shape) == {}


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("5m", 300 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("300ms", 3 * 10**8),
        ("0", 0),
        ("-1m", -60 * 10**9),
        ("1.5s", 1_500_000_000),
        (".5h", 1800 * 10**9),
        ("2µs", 2000),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("300", 'time: missing unit in duration "300"'),
        ("5x", 'time: unknown unit "x" in duration "5x"'),
        ("", 'time: invalid duration ""'),
        ("m", 'time: invalid duration "m"'),
        (True, "Unsupported type: 'bool'"),
        ([1], "Unsupported type: '[]interface {}'"),
        ({}, "Unsupported type: 'map[string]interface {}'"),
    ],
)
def test_bad_keep_alive(value: object, message: str) -> None:
    with pytest.raises(ApiError) as err:
        keep_alive_seconds(value)
    assert (err.value.status, err.value.message) == (400, message)


def test_keep_alive_values() -> None:
    assert keep_alive_seconds(0.0) == 0
    assert keep_alive_seconds(30) == 30
    assert keep_alive_seconds(-1) == FOREVER
    assert keep_alive_seconds("-5m") == FOREVER
    assert keep_alive_seconds("1m") == 60
    assert math.isinf(FOREVER)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ("127.0.0.1", 11434)),
        ("0.0.0.0", ("0.0.0.0", 11434)),
        (":8080", ("", 8080)),
        ("localhost:1234", ("localhost", 1234)),
        ("http://example.com", ("example.com", 80)),
        ("https://example.com", ("example.com", 443)),
        ("http://[::1]:9000/path", ("::1", 9000)),
        ("127.0.0.1:99999", ("127.0.0.1", 11434)),
    ],
)
def test_ollama_host(raw: str, expected: tuple[str, int]) -> None:
    assert parse_host(raw) == expected


def test_config_from_env() -> None:
    cfg = ServerConfig.from_env(
        {
            "OLLAMA_HOST": "127.0.0.1:1",
            "MFC_HOST": " '127.0.0.1:2' ",
            "OLLAMA_NUM_PARALLEL": "3",
            "OLLAMA_MAX_QUEUE": "7",
            "OLLAMA_FLASH_ATTENTION": "yes",  # unparsable non-empty counts as true
            "OLLAMA_KV_CACHE_TYPE": "q8_0",
            "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_ORIGINS": "http://example.com, https://*.example.org",
        }
    )
    assert (cfg.host, cfg.port) == ("127.0.0.1", 2)
    assert (cfg.num_parallel, cfg.max_queue, cfg.max_loaded_models) == (3, 7, 3)
    assert cfg.flash_attention is True
    assert cfg.kv_cache_type == "q8_0"
    assert cfg.keep_alive == FOREVER
    assert cfg.origins[:2] == ("http://example.com", "https://*.example.org")
    defaults = ServerConfig.from_env({"OLLAMA_KV_CACHE_TYPE": "bogus"})
    assert defaults.flash_attention is None and defaults.kv_cache_type == "f16"


def test_options_types_and_layering() -> None:
    opts = DEFAULT_OPTIONS.merged({"temperature": 0.2, "stop": ["a"], "nope": 1}).merged(
        {"top_k": 5.9, "stop": ["b", "c"], "seed": None}
    )
    assert (opts.temperature, opts.top_k, opts.stop, opts.seed) == (0.2, 5, ("b", "c"), -1)
    # every PARAMETER a Modelfile may set is an option (api.Runner's draft_num_predict too)
    drafted = DEFAULT_OPTIONS.merged({"draft_num_predict": 2})
    assert drafted.draft_num_predict == 2 and drafted.runner_key() != DEFAULT_OPTIONS.runner_key()
    for values, message in [
        ({"top_k": "x"}, 'option "top_k" must be of type integer'),
        ({"draft_num_predict": "x"}, 'option "draft_num_predict" must be of type integer'),
        ({"temperature": True}, 'option "temperature" must be of type float32'),
        ({"use_mmap": 1}, 'option "use_mmap" must be of type boolean'),
        ({"stop": "x"}, 'option "stop" must be of type array'),
        ({"stop": [1]}, 'option "stop" must be of an array of strings'),
    ]:
        with pytest.raises(ApiError) as err:
            DEFAULT_OPTIONS.merged(values)
        assert (err.value.status, err.value.message) == (500, message)


def test_stop_sequences_are_held_back_and_cut() -> None:
    s = TextStream(("<|im_end|>", "STOP"))
    assert s.feed(b"Hello <|im") == "Hello "
    assert s.feed(b"_e") == ""
    assert s.feed(b"nd|> more") == ""
    assert s.stopped
    s = TextStream(("STOP",))
    assert s.feed(b"ST") == ""
    assert s.feed(b"ay") == "STay"
    assert s.flush() == ""
    s = TextStream()
    assert s.feed("é".encode()[:1]) == ""  # half a character waits for the other half
    assert s.feed("é".encode()[1:]) == "é"


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_braces_that_are_not_tool_calls_are_content() -> None:
    p = ToolCallParser(TOOLS, None)
    out = [p.feed(x) for x in ["a {b", "} c ", '{"name":"other","arguments":{}}']]
    text = "".join(t for t, _ in out) + p.flush()
    assert text == 'a {b} c {"name":"other","arguments":{}}'
    assert not any(c for _, c in out)


def test_thinking_is_split_from_the_answer() -> None:
    t = ThinkingParser()
    parts = [t.feed(x) for x in ["<thi", "nk>plan", " this</th", "ink>\n\nAnswer"]]
    assert "".join(p[0] for p in parts) == "plan this"
    assert "".join(p[1] for p in parts) == "Answer"
    t = ThinkingParser()
    assert t.feed("No tags") == ("", "No tags")


def test_create_folders_live_in_the_store_temp_area(tmp_path: Path) -> None:
    """/api/create links uploaded safetensors files into a folder for the converter; a
    server killed mid-create must not leak it: the next writer to the store clears it."""
    script = (
        "import os, sys\n"
        "from runtime.api_create import create_request\n"
        "from runtime.schemas import CreateRequest\n"
        "from toolchain.store import Store\n"
        "store = Store.open(sys.argv[1])\n"
        "config = store.blobs.write_bytes(b'{}').digest\n"
        "weights = store.blobs.write_bytes(b'x').digest\n"
        "files = {'config.json': config, 'model.safetensors': weights}\n"
        "_, temps = create_request(store, CreateRequest(files=files))\n"
        "print(temps[0], flush=True)\n"
        "os._exit(0)  # as if killed: no cleanup\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    folder = Path(run.stdout.strip())
    store = Store.open(tmp_path)
    assert folder.parent == store.blobs.tmp_dir and (folder / "config.json").is_symlink()
    assert store.blobs.clean_stale_temps() == 1
    assert not folder.exists()
