# noqa: RUF100
"""`mfc template render|exec`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracle.go_oracle import GoOracle


def mfc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from toolchain.cli import main; main()", *args],  # noqa: PLW1510
                          capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "t.gotmpl").write_text("{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}")
    (tmp_path / "r.json").write_text(json.dumps({"messages": [{"role": "User", "content": "hi"}]}))
    (tmp_path / "bad.gotmpl").write_text("{{ .A.B.C }}")
    (tmp_path / "d.json").write_text('{"A": {"B": 1}, "N": 100000000}')
    (tmp_path / "n.gotmpl").write_text("{{ .N }} {{ json .N }}")
    return tmp_path


def test_render_prints_the_exact_prompt(files: Path) -> None:
    r = mfc(
        "template",
        "render",
        "--template",
        str(files / "t.gotmpl"),
        "--request",
        str(files / "r.json"),
    )
    assert (r.returncode, r.stdout) == (0, "<user>hi")
    r = mfc(
        "template",
        "render",
        "--template",
        str(files / "t.gotmpl"),
        "--request",
        str(files / "r.json"),
        "--json",
    )
    assert json.loads(r.stdout) == {"output": "<user>hi"}


def test_exec_decodes_json_as_go_does(files: Path) -> None:
    r = mfc(
        "template", "exec", "--template", str(files / "n.gotmpl"), "--data", str(files / "d.json")
    )
    assert (r.returncode, r.stdout) == (0, "1e+08 100000000")


def test_template_errors_exit_1_with_gos_message(files: Path) -> None:
    r = mfc(
        "template",
        "exec",
        "--template",
        str(files / "bad.gotmpl"),
        "--data",
        str(files / "d.json"),
        "--json",
    )
    assert r.returncode == 1
    assert json.loads(r.stdout) == {"error": "template: :1:5: executing \"\" at <.A.B.C>: "
                                    "can't evaluate field C in type interface {}"}  # fmt: skip
    r = mfc(
        "template", "exec", "--template", str(files / "bad.gotmpl"), "--data", str(files / "d.json")
    )
    assert (
        r.returncode == 1
        and "bad.gotmpl:1:6: error: template: :1:5" in r.stderr
        and "Traceback" not in r.stderr
    )


def test_usage_errors(files: Path) -> None:
    r = mfc("template", "render", "--request", str(files / "r.json"))
    assert r.returncode == 2
    (files / "broken.json").write_text("{")
    r = mfc(
        "template",
        "exec",
        "--template",
        str(files / "n.gotmpl"),
        "--data",
        str(files / "broken.json"),
    )
    assert r.returncode == 1 and "invalid JSON" in r.stderr and "Traceback" not in r.stderr


def test_lone_surrogates_decode_as_go_does(files: Path, go_oracle: GoOracle) -> None:
    """`"\\ud800"` in JSON is U+FFFD to Go's decoder; Python keeps a lone surrogate, which
    used to crash rendering (a traceback). Data and requests now match Go's output."""
    template = '{{ .x }}|{{ len .x }}|{{ printf "%q" .x }}|{{ json . }}'
    data = '{"x": "a\\ud800b", "\\udc80k": [1, "\\udfff"], "ok": "\\ud83d\\ude00"}'
    (files / "s.gotmpl").write_text(template)
    (files / "s.json").write_text(data)
    chat = '{"messages": [{"role": "user", "content": "hi \\udbff"}], "system": "\\ud800"}'
    (files / "s-request.json").write_text(chat)
    want = go_oracle.run([("exec", template, json.loads(data)),
                          ("prompt", CHAT_TEMPLATE, json.loads(chat))])  # fmt: skip
    (files / "chat.gotmpl").write_text(CHAT_TEMPLATE)
    r = mfc("template", "exec", "--template", str(files / "s.gotmpl"), "--data",
            str(files / "s.json"))  # fmt: skip
    assert want[0].ok and (r.returncode, r.stdout.encode()) == (0, want[0].output), r.stderr
    r = mfc("template", "render", "--template", str(files / "chat.gotmpl"), "--request",
            str(files / "s-request.json"))  # fmt: skip
    assert want[1].ok and (r.returncode, r.stdout.encode()) == (0, want[1].output), r.stderr
    assert "\ufffd" in r.stdout


CHAT_TEMPLATE = "{{ .System }}{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}"
