"""`mfc check`, `mfc fmt`, `mfc parse`: output, --json, exit codes (0 ok, 1 user error,
2 usage), files left untouched on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from toolchain.cli import cli

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "modelfiles"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, text: str, name: str = "Modelfile") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_check_fixtures_are_clean() -> None:
    files = [str(p) for p in sorted(FIXTURES.glob("*/Modelfile"))]
    code, out, err = run("check", *files)
    assert (code, out) == (0, "")
    assert err == f"checked {len(files)} files: no problems\n"


def test_check_reports_errors_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "FROM x\nPARAMETER top_k many\n")
    code, _, err = run("check", str(path))
    assert code == 1
    assert err.startswith(f"{path}:2:17: error: invalid int value [many]\n")
    assert err.endswith("checked 1 file: 1 error\n")


def test_check_json(tmp_path: Path) -> None:
    path = write(tmp_path, "FROM x\nFROM y\nPARAMETER num_ctx 1.5\n")
    code, out, _ = run("check", "--json", str(path))
    assert code == 1
    records = json.loads(out)
    assert [sorted(r) for r in records] == [
        sorted(["file", "line", "col", "end_line", "end_col", "severity", "message", "hint"])
    ] * 2
    assert [(r["line"], r["col"], r["severity"]) for r in records] == [
        (2, 1, "warning"),
        (3, 19, "error"),
    ]
    assert records[0]["file"] == str(path)


def test_check_strict_fails_on_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "FROM x\nPARAMETER mirostat 1\n")
    assert run("check", str(path))[0] == 0
    assert run("check", "--strict", str(path))[0] == 1


def test_check_missing_file_is_a_user_error(tmp_path: Path) -> None:
    code, _, err = run("check", str(tmp_path / "nope"))
    assert code == 1
    assert f"{tmp_path / 'nope'}: error: cannot read" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "FROM x\n")
    assert run("check", "--bogus")[0] == 2
    assert run("fmt", "--check", "--write", str(path))[0] == 2
    assert run("parse")[0] == 2


def test_parse_json(tmp_path: Path) -> None:
    path = write(tmp_path, 'FROM x\nPARAMETER stop "a b"\nMESSAGE user hi\n')
    code, out, _ = run("parse", "--json", str(path))
    assert code == 0
    doc = json.loads(out)
    assert doc["commands"] == [["model", "x"], ["stop", "a b"], ["message", "user: hi"]]
    kinds = [
        (i["kind"], i.get("name"), i.get("role"), i.get("content"), i["value"])
        for i in doc["instructions"]
    ]
    assert kinds == [
        ("from", None, None, None, "x"),
        ("parameter", "stop", None, None, "a b"),
        ("message", None, "user", "hi", "hi"),
    ]
    assert doc["instructions"][1]["span"] == {
        "file": str(path),
        "line": 2,
        "col": 1,
        "end_line": 2,
        "end_col": 21,
    }
    assert doc["instructions"][1]["value_span"]["col"] == 17


def test_parse_rejects_what_the_reference_rejects(tmp_path: Path) -> None:
    path = write(tmp_path, "PARAMETER temperature 1\n")
    code, out, err = run("parse", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"{path}:1:1: error: no FROM line\n")
    code, out, _ = run("parse", "--json", str(path))
    assert code == 1
    assert json.loads(out)["reference_error"] == "no FROM line"
    # an unknown parameter is not the parser's business
    assert run("parse", str(write(tmp_path, "FROM x\nPARAMETER bogus 1\n")))[0] == 0


def test_fmt_prints_check_and_write(tmp_path: Path) -> None:
    messy = "from  x\nparameter temperature   0.5   \n"
    path = write(tmp_path, messy)
    code, out, _ = run("fmt", str(path))
    assert (code, out) == (0, "FROM x\nPARAMETER temperature 0.5\n")
    code, out, _ = run("fmt", "--check", str(path))
    assert (code, out) == (1, f"would reformat {path}\n")
    assert path.read_text() == messy
    code, _, err = run("fmt", "--write", str(path))
    assert (code, err) == (0, f"reformatted {path}\n")
    assert path.read_text() == "FROM x\nPARAMETER temperature 0.5\n"
    assert run("fmt", "--check", str(path))[0] == 0
    code, out, _ = run("fmt", "--check", "--json", str(path))
    assert json.loads(out) == {
        "files": [{"file": str(path), "changed": False, "written": False}],
        "diagnostics": [],
    }


def test_fmt_leaves_a_broken_file_alone(tmp_path: Path) -> None:
    broken = 'FROM x\nSYSTEM """never closed\n'
    path = write(tmp_path, broken)
    code, out, err = run("fmt", "--write", str(path))
    assert (code, out) == (1, "")
    assert f"{path}:2:8: error: unexpected EOF" in err
    assert path.read_text() == broken
    assert [p.name for p in tmp_path.iterdir()] == ["Modelfile"]


def test_no_traceback_from_the_console_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(b"\xff\xfe\x00\xd8garbage")
    done = subprocess.run(
        [sys.executable, "-c", "from toolchain.cli import main; main()", "parse", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr
