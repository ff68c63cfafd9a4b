"""Request bodies Python's own machinery used to turn into 500s or stalls (issue 13, 2 and 6).

Every expected message is what Go 1.19's encoding/json Decoder says for the same bytes
decoded into a struct shaped like the reference's request (checked with `go run`): nesting
past 10000 levels is `exceeded max depth`, a number no int/float64 holds is a type error
that quotes its literal, and map keys do not appear in the field path.
"""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc

import pytest

from runtime import decodepool, jsonbody
from runtime.errors import ApiError
from runtime.jsonbody import MAX_VALUE_DEPTH, MAX_VALUES, decode, decode_async, parse_json
from runtime.schemas import CHAT, GENERATE, SHOW


def _error(body: bytes | str, shape: jsonbody.GoType = GENERATE) -> str:
    with pytest.raises(ApiError) as err:
        decode(body.encode() if isinstance(body, str) else body, shape)
    assert err.value.status == 400
    return err.value.message


def test_nesting_past_go_limit_is_gos_max_depth_error() -> None:
    assert _error("[" * 10_001 + "]" * 10_001) == "invalid character '[' exceeded max depth"
    # the top-level object counts: 1 + 10000 levels is one too many
    deep = '{"x":' + "[" * 10_000 + "]" * 10_000 + "}"
    assert _error(deep, SHOW) == "invalid character '[' exceeded max depth"
    # a syntax error before the limit is reported first, as Go's scanner meets it
    assert _error("[" * 500 + "x") == "invalid character 'x' looking for beginning of value"


def test_nesting_go_accepts_is_accepted() -> None:
    # 9999 levels in a field the request does not have: Go decodes and ignores it
    body = '{"model":"m","x":' + "[" * 9_999 + "]" * 9_999 + "}"
    assert decode(body.encode(), SHOW) == {"model": "m"}
    assert isinstance(parse_json(b"[" * 5_000 + b"]" * 5_000), list)


def test_deep_values_in_kept_fields_are_refused_not_crashed() -> None:
    nested = "[" * (MAX_VALUE_DEPTH + 1) + "]" * (MAX_VALUE_DEPTH + 1)
    assert _error('{"format":' + nested + "}") == (
        f"json: cannot unmarshal value nested deeper than {MAX_VALUE_DEPTH} levels into Go "
        "struct field GenerateRequest.format of type interface {}"
    )
    ok = "[" * MAX_VALUE_DEPTH + "]" * MAX_VALUE_DEPTH
    assert decode(('{"format":' + ok + "}").encode(), GENERATE)["format"] == json.loads(ok)


def test_integers_past_python_digit_limit_are_gos_type_errors() -> None:
    big = "9" * 5_000
    assert _error('{"context":[' + big + "]}") == (
        f"json: cannot unmarshal number {big} into Go struct field GenerateRequest.context "
        "of type int"
    )
    assert _error('{"options":{"seed":' + big + "}}") == (
        f"json: cannot unmarshal number {big} into Go struct field GenerateRequest.options "
        "of type float64"
    )
    assert _error('{"top_logprobs":10000000000000000000}') == (
        "json: cannot unmarshal number 10000000000000000000 into Go struct field "
        "GenerateRequest.top_logprobs of type int"
    )
    # 2^40 fits Go's int: accepted (what the server then does with it is its business)
    assert decode(b'{"options":{"num_batch":1099511627776}}', GENERATE) == {
        "options": {"num_batch": 1099511627776}
    }


def test_float_overflow_is_gos_type_error() -> None:
    assert _error('{"options":{"temperature":1e999}}') == (
        "json: cannot unmarshal number 1e999 into Go struct field GenerateRequest.options "
        "of type float64"
    )
    assert _error('{"options":{"stop":["a", -1e999]}}') == (
        "json: cannot unmarshal number -1e999 into Go struct field GenerateRequest.options "
        "of type float64"
    )
    assert _error('{"keep_alive":1e999}') == (
        "json: cannot unmarshal number 1e999 into Go struct field GenerateRequest.keep_alive "
        "of type float64"
    )
    assert _error('{"messages":[{"role":"user"}],"tools":[{"items":2e400}]}', CHAT) == (
        "json: cannot unmarshal number 2e400 into Go struct field ChatRequest.tools.items "
        "of type float64"
    )


def test_messages_quote_the_literal_after_the_fast_path() -> None:
    # the C decoder makes plain floats; the message still needs the literal `1.50`
    assert _error('{"top_logprobs":1.50}') == (
        "json: cannot unmarshal number 1.50 into Go struct field GenerateRequest.top_logprobs "
        "of type int"
    )
    assert _error(b'{"model":NaN}') == "invalid character 'N' looking for beginning of value"
    assert decode(b'{"model":"a"} trailing', SHOW) == {"model": "a"}
    assert decode(b'{"model":"\\ud800x"}', SHOW) == {"model": "\ufffdx"}


def test_too_many_values_is_a_stated_limit() -> None:
    body = b'{"model":"m","x":[' + b",".join([b"0"] * (MAX_VALUES + 1)) + b"]}"
    assert _error(body, SHOW) == f"request body holds more than {MAX_VALUES} JSON values"
    # commas inside strings are not values
    text = json.dumps({"model": "m", "prompt": "," * (MAX_VALUES + 10)}).encode()
    assert decode(text, GENERATE)["prompt"] == "," * (MAX_VALUES + 10)


def test_only_small_plain_bodies_decode_in_the_server_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python's C decoder holds the GIL for a whole call (~60 ms for 50 MB) and the Go
    scanner is pure Python (141 ms for a 16 KB body nested 8000 deep, on the event loop
    before): neither may run in the server's process for a body of any size."""
    quick: list[int] = []
    real_quick = jsonbody._decode_quick

    def spy(body: bytes, shape: jsonbody.GoType) -> dict[str, object] | None:
        quick.append(len(body))
        return real_quick(body, shape)

    def no_scanner(body: bytes, max_values: int | None = None) -> tuple[int, int]:
        raise AssertionError("the Go scanner ran in the server's process")

    monkeypatch.setattr(jsonbody, "_decode_quick", spy)
    monkeypatch.setattr(jsonbody, "_go_error", no_scanner)
    small = b'{"model":"m"}'
    large = json.dumps({"model": "m", "prompt": "x" * (1 << 20)}).encode()
    deep = b'{"model":"m","messages":' + b"[" * 8000 + b"]" * 8000 + b"}"
    chunks = [large[i : i + 65536] for i in range(0, len(large), 65536)]

    async def run() -> None:
        assert await decode_async(small, GENERATE) == {"model": "m"}
        assert (await decode_async(large, GENERATE))["prompt"] == "x" * (1 << 20)
        assert (await decode_async(chunks, GENERATE))["prompt"] == "x" * (1 << 20)
        with pytest.raises(ApiError, match="cannot unmarshal array into Go struct field"):
            await decode_async(deep, CHAT)
        with pytest.raises(ApiError, match="invalid character '}' after array element"):
            await decode_async([b'{"model":"m","x":[1,', b"2}"], GENERATE)

    try:
        asyncio.run(run())
        workers = decodepool.worker_pids()
        assert workers and os.getpid() not in workers
    finally:
        decodepool.POOL.stop()
    assert quick == [len(small), len(deep), len(b'{"model":"m","x":[1,2}')]


@pytest.mark.parametrize(
    "body",
    [
        # 8 MB of numbers in a field nobody reads (the issue's /api/show body)
        b'{"model":"m","junk":[' + b",".join(b"%d.25" % i for i in range(700_000)) + b"]}",
        # 8 MB prompt
        json.dumps({"model": "m", "prompt": "hello world, " * 640_000}).encode(),
    ],
    ids=["numbers", "prompt"],
)
def test_decoding_memory_is_a_small_multiple_of_the_body(body: bytes) -> None:
    tracemalloc.start()
    try:
        decode(body, SHOW if b"junk" in body else GENERATE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # before: one float subclass with a __dict__ per number, 100+ MB for the first body
    assert peak < 6 * len(body), f"{peak / 1e6:.0f} MB for a {len(body) / 1e6:.0f} MB body"
