# noqa: RUF100
"""The reference's bundled templates and expected renderings, and our named templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from toolchain.prompt import detect_template, named_template, render_prompt, template_names

USER = {"role": "user", "content": "Hello, how are you?"}
ASSISTANT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
USER2 = {"role": "user", "content": "I'd like to show off how chat templating works!"}
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CASES: dict[str, list[dict[str, Any]]] = {
    "user": [USER],
    "user-assistant-user": [USER, ASSISTANT, USER2],
    "system-user-assistant-user": [SYSTEM, USER, ASSISTANT, USER2],
}


def _templates_dir(conformance_dir: Path) -> Path:
    return conformance_dir / "templates"


def _expected(conformance_dir: Path, name: str, case: str) -> str:
    path = _templates_dir(conformance_dir) / "testdata" / f"{name}.gotmpl" / case
    return path.read_bytes().decode("utf-8")


def test_every_reference_template_renders_byte_identical(conformance_dir: Path) -> None:
    files = sorted(_templates_dir(conformance_dir).glob("*.gotmpl"))
    assert len(files) == 20
    for f in files:
        for case, messages in CASES.items():
            got = render_prompt(f.read_text(encoding="utf-8"), messages=messages)
            assert got == _expected(conformance_dir, f.stem, case), (f.name, case)


def test_our_named_templates_render_like_the_reference(conformance_dir: Path) -> None:
    names = template_names()
    reference = sorted(p.stem for p in _templates_dir(conformance_dir).glob("*.gotmpl"))
    assert names == reference
    for name in names:
        ours = named_template(name)
        ref_params = json.loads((_templates_dir(conformance_dir) / f"{name}.json").read_text())
        assert ours.stop == ref_params["stop"], name
        for case, messages in CASES.items():
            assert render_prompt(ours.template, messages=messages) == _expected(
                conformance_dir, name, case
            ), (name, case)


def test_detection_picks_a_template_rendering_like_the_named_reference(
    conformance_dir: Path,
) -> None:
    index = json.loads((_templates_dir(conformance_dir) / "index.json").read_text())
    assert len(index) == 37
    for i, entry in enumerate(index):
        found = detect_template(entry["template"])
        assert found is not None, (i, entry["name"])
        for case, messages in CASES.items():
            got = render_prompt(found.template, messages=messages)
            assert got == _expected(conformance_dir, entry["name"], case), (i, entry["name"], case)


def test_detection_of_the_testdata_jsonl(conformance_dir: Path) -> None:
    lines = (
        (_templates_dir(conformance_dir) / "testdata" / "templates.jsonl").read_text().splitlines()
    )
    for line in lines:
        ((name, jinja),) = json.loads(line).items()
        found = detect_template(jinja)
        assert found is not None and found.name == name


@pytest.mark.parametrize(
    "text", ["", "{{ messages }}", "{% for m in messages %}{{ m.content }}{% endfor %}"]
)
def test_unknown_chat_templates_are_not_detected(text: str) -> None:
    assert detect_template(text) is None


def test_params_layer_is_go_json_of_stop_only() -> None:
    nt = named_template("phi-3")
    assert nt.params_json() == (
        b'{"stop":["\\u003c|end|\\u003e","\\u003c|system|\\u003e","\\u003c|user|\\u003e",'
        b'"\\u003c|assistant|\\u003e"]}\n'
    )
