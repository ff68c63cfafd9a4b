"""PARAMETER typing as `ollama create` does it (spec §1.9): table, values, error texts;
Go's strconv/fmt themselves as the oracle for the number syntax and rounding."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

import quant
from toolchain.frontend import parse_modelfile
from toolchain.frontend.go_strconv import (
    format_float_v,
    parse_bool,
    parse_float32,
    parse_int64,
)
from toolchain.frontend.parameters import (
    DEPRECATED_PARAMETERS,
    PARAMETERS,
    QUANTIZE_TYPES,
    InvalidParameterValueError,
    UnknownParameterError,
    canonical_quantize_type,
    collect_parameters,
    parse_parameter_value,
)
from toolchain.ir import Parameter

ORACLE_SRC = Path(__file__).resolve().parent / "go_strconv" / "main.go"
CACHE = Path(os.environ.get("MFC_CACHE", Path.home() / ".cache" / "mfc"))


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_table_matches_the_reference_options() -> None:
    assert sorted(PARAMETERS) == sorted(
        [
            "num_ctx",
            "num_batch",
            "num_gpu",
            "main_gpu",
            "use_mmap",
            "num_thread",
            "draft_num_predict",
            "num_keep",
            "seed",
            "num_predict",
            "top_k",
            "top_p",
            "min_p",
            "typical_p",
            "repeat_last_n",
            "temperature",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "stop",
        ]
    )
    assert "penalize_newline" in DEPRECATED_PARAMETERS
    assert not set(DEPRECATED_PARAMETERS) & set(PARAMETERS)


@pytest.mark.parametrize(
    "name,raw,value",
    [
        ("temperature", "0.5", 0.5),
        ("temperature", "0.1", f32(0.1)),
        ("top_k", "1", 1),
        ("num_ctx", "010", 10),
        ("seed", "-1", -1),
        ("seed", "+7", 7),
        ("use_mmap", "T", True),
        ("use_mmap", "False", False),
        ("top_p", ".5", 0.5),
        ("top_p", "1_000.5", 1000.5),
        ("top_p", "0x1p-2", 0.25),
        ("min_p", "1e-50", 0.0),
        ("stop", "### User:", ["### User:"]),
        ("stop", "", [""]),
    ],
)
def test_values_as_the_reference_stores_them(name: str, raw: str, value: Any) -> None:
    got = parse_parameter_value(name, raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    "name,raw,message",
    [
        ("num_ctx", "1.0", "invalid int value [1.0]"),
        ("num_ctx", " 1", "invalid int value [ 1]"),
        ("num_ctx", "1_000", "invalid int value [1_000]"),
        ("num_ctx", "9223372036854775808", "invalid int value [9223372036854775808]"),
        ("temperature", "1e39", "invalid float value [1e39]"),
        ("temperature", "", "invalid float value []"),
        ("use_mmap", "yes", "invalid bool value [yes]"),
        ("use_mmap", "tRue", "invalid bool value [tRue]"),
    ],
)
def test_bad_values_use_the_reference_text(name: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidParameterValueError) as caught:
        parse_parameter_value(name, raw)
    assert caught.value.message == message


@pytest.mark.parametrize("name", ["numa", "num_gqa", "Temperature", "", "penalize_newline"])
def test_unknown_names_are_case_sensitive(name: str) -> None:
    with pytest.raises(UnknownParameterError) as caught:
        parse_parameter_value(name, "1")
    assert caught.value.message == f"unknown parameter '{name}'"


def test_unknown_name_hint_suggests_the_known_one() -> None:
    with pytest.raises(UnknownParameterError) as caught:
        parse_parameter_value("Temperature", "1")
    assert caught.value.hint == "did you mean temperature?"


def test_collect_parameters_like_create_request() -> None:
    """TestCreateRequest: float32 temperature, int64 top_k; stop appends; deprecated skipped."""
    mf = parse_modelfile(
        "FROM test\nPARAMETER temperature 0.5\nPARAMETER top_k 1\nPARAMETER stop a\n"
        "PARAMETER mirostat 2\nPARAMETER stop b\nPARAMETER top_k 3\n"
    )
    params = [ins for ins in mf.instructions if isinstance(ins, Parameter)]
    merged, warnings = collect_parameters(params)
    assert merged == {"temperature": 0.5, "top_k": 3, "stop": ["a", "b"]}
    assert warnings == ["parameter mirostat is deprecated"]


def test_quantize_table_and_case_insensitivity() -> None:
    assert len(QUANTIZE_TYPES) == 30
    assert canonical_quantize_type("Q4_K_M") == "q4_K_M"
    assert canonical_quantize_type("IQ4_XS") == "iq4_XS"
    assert canonical_quantize_type("iq3_m") == "iq3_M"
    assert canonical_quantize_type("IQ2_m") == "iq2_M"
    assert canonical_quantize_type("IQ2_XXS") == "iq2_XXS"
    assert canonical_quantize_type("BF16") == "bf16"
    assert canonical_quantize_type("q4_k") is None
    assert [t.upper() for t in QUANTIZE_TYPES] == [t.upper() for t in quant.FTYPE_NAMES]


def test_the_front_end_imports_nothing_heavy() -> None:
    """`mfc check` reads the QUANTIZE types from quant without importing numpy or torch, and
    checks TEMPLATEs with toolchain.prompt without importing jinja2."""
    heavy = "{'numpy', 'torch', 'jinja2'}"
    code = f"import sys, toolchain.frontend; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- Go itself as the oracle -------------------------------------------------------------


def go_oracle_binary() -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not installed: run `make system-deps`")
    digest = hashlib.sha256(ORACLE_SRC.read_bytes()).hexdigest()[:16]
    binary = CACHE / "oracle" / f"go-strconv-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
            out = Path(tmp) / "oracle"
            env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GO111MODULE="off")
            subprocess.run(
                [go, "build", "-o", str(out), str(ORACLE_SRC)],
                check=True,
                env=env,
                capture_output=True,
                timeout=600,
            )
            out.replace(binary)
    return binary


def ask_go(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run(
        [str(go_oracle_binary())],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


EDGE_NUMBERS = [
    "0",
    "-0",
    "+0",
    "1",
    "010",
    "-9223372036854775808",
    "9223372036854775807",
    "9223372036854775808",
    "1.0",
    "1e3",
    ".5",
    "5.",
    ".",
    "e5",
    "1e",
    "1e+",
    "0x10",
    "0x1p-2",
    "0x1.8p1",
    "0X1P4",
    "0x",
    "0x1",
    "0x.p1",
    "1_000",
    "1__000",
    "_1",
    "1_",
    "1_000.5",
    "1e1_0",
    "0x_1p0",
    "inf",
    "+Inf",
    "-INF",
    "infinity",
    "+infinity",
    "infin",
    "nan",
    "NaN",
    "-nan",
    "+nan",
    "1e39",
    "3.4028235e38",
    "3.40282356e38",
    "3.40282357e38",
    "-3.4028236e38",
    "1e-50",
    "1.4e-45",
    "7e-46",
    "7.1e-46",
    "1.17549435e-38",
    "16777217",
    "16777219",
    "0.1",
    "0.2",
    "0.3",
    "2.5",
    "1.00000005960464477539062",
    "1.000000059604644775390625",
    "1.0000000596046447753906251",
    " 1",
    "1 ",
    "",
    "+",
    "-",
    "١",
    "1e99999",
    "1e-99999",
    "0.000000000000000000000000000000000000000000000000001e60",
    "123456789012345678901234567890",
    "0x1.fffffep127",
    "0x1.ffffffp127",
    "0x1p-149",
    "0x1p-150",
    "0x1.8p-150",
    "t",
    "T",
    "TRUE",
    "True",
    "true",
    "tRue",
    "yes",
    "f",
    "FALSE",
]


def random_numbers(count: int) -> list[str]:
    rng = random.Random(20240601)
    alphabet = "0123456789" * 3 + "._eE+-xXpP_aAfFinINtT "
    out = []
    for _ in range(count):
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
        out.append(f"{digits[:3]}.{digits[3:]}e{rng.randint(-50, 40)}")
    return out


def ours(op: str, s: str) -> tuple[bool, Any]:
    parse = {"int": parse_int64, "float32": parse_float32, "bool": parse_bool}[op]
    try:
        value = parse(s)
    except ValueError:
        return False, None
    if op == "float32":
        return True, struct.unpack("<I", struct.pack("<f", value))[0] if not math.isnan(
            value
        ) else "nan"
    return True, value


@pytest.mark.oracle
def test_number_parsing_matches_go() -> None:
    inputs = EDGE_NUMBERS + random_numbers(1500)
    requests = [{"op": op, "s": s} for s in inputs for op in ("int", "float32", "bool")]
    mismatches = []
    for req, ans in zip(requests, ask_go(requests), strict=True):
        key = {"int": "int", "float32": "bits", "bool": "bool"}[req["op"]]
        expected: Any = ans[key] if ans["ok"] else None
        if req["op"] == "float32" and ans["ok"] and (ans["bits"] & 0x7FFFFFFF) > 0x7F800000:
            expected = "nan"
        got = ours(req["op"], req["s"])
        if got != (ans["ok"], expected):
            mismatches.append((req, got, ans))
    assert mismatches == []


@pytest.mark.oracle
def test_percent_v_matches_go() -> None:
    rng = random.Random(7)
    values = [
        0.0,
        -0.0,
        1.0,
        4096.0,
        0.7,
        1e6,
        123456.0,
        1234567.0,
        1e-4,
        1e-5,
        1e21,
        1e20,
        0.1 + 0.2,
        5e-324,
        1.7976931348623157e308,
        100.0,
        0.05,
        2.5e-05,
        123456.7,
    ]
    values += [f32(rng.uniform(-2, 2)) for _ in range(300)]
    values += [rng.uniform(0, 1) * 10.0 ** rng.randint(-12, 12) for _ in range(300)]
    bits = [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values]
    answers = ask_go([{"op": "fmtv", "bits": b} for b in bits])
    assert [format_float_v(v) for v in values] == [a["text"] for a in answers]
