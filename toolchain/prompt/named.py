"""mfc's named chat templates and their detection from a GGUF `tokenizer.chat_template`.

The templates in `templates/` are written for mfc from the published chat formats; each
renders the same prompt as the reference's template of the same name. Detection reads the
Jinja template for the markers that identify a format (data-driven: `DETECTION`), so it
recognises variants of a format that differ in whitespace, default system prompts or
error checks, not just known strings.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

#: (name, markers that must all occur, markers that must not occur); first match wins.
DETECTION: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("command-r", ("<|START_OF_TURN_TOKEN|>",), ()),
    ("llama3-instruct", ("<|start_header_id|>", "<|end_header_id|>"), ()),
    ("gemma3-instruct", ("<start_of_turn>", "first_user_prefix"), ()),
    ("gemma-instruct", ("<start_of_turn>",), ()),
    ("openchat", ("GPT4 Correct",), ()),
    ("chatml", ("<|im_start|>",), ()),
    ("llama2-chat", ("[INST]", "<<SYS>>"), ()),
    ("codellama-70b-instruct", ("Source:", "<step>"), ()),
    ("mistral-instruct", ("[INST]", "[/INST]"), ()),
    ("phi-3", ("<|end|>", "<|assistant|>"), ()),
    ("zephyr", ("<|user|>", "<|assistant|>"), ()),
    ("magicoder", ("@@ Instruction",), ()),
    ("alpaca", ("### Instruction:", "### Response:"), ()),
    ("starcoder2-instruct", ("### Instruction", "### Response"), ()),
    ("solar-instruct", ("### User:", "### Assistant"), ()),
    ("alfred", ("<start_user>", "<start_assistant>"), ()),
    ("granite-instruct", ("Question:", "Answer:"), ()),
    ("falcon-instruct", ("Falcon:",), ()),
    ("chatqa", ("User: ", "Assistant:"), ()),
    ("vicuna", ("USER:", "ASSISTANT:"), ()),
)


@dataclass(frozen=True, slots=True)
class NamedTemplate:
    """A named chat format: its Go template source and its parameters (e.g. `stop`)."""

    name: str
    template: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def stop(self) -> list[str]:
        return list(self.parameters.get("stop", []))

    def params_json(self) -> bytes:
        """The params layer the reference writes for a detected template: only `stop`."""
        from toolchain.gojson import encode

        return encode({"stop": self.stop})


def template_names() -> list[str]:
    root = resources.files("toolchain.prompt") / "templates"
    return sorted(p.name[: -len(".gotmpl")] for p in root.iterdir() if p.name.endswith(".gotmpl"))


@functools.lru_cache(maxsize=64)
def named_template(name: str) -> NamedTemplate:
    """Load one of mfc's named templates (KeyError if there is none by that name)."""
    root = resources.files("toolchain.prompt") / "templates"
    src = root / f"{name}.gotmpl"
    if not src.is_file():
        raise KeyError(name)
    text = src.read_text(encoding="utf-8").replace("\r\n", "\n")
    params_file = root / f"{name}.json"
    params = json.loads(params_file.read_text(encoding="utf-8")) if params_file.is_file() else {}
    return NamedTemplate(name, text, params)


def detect_template(chat_template: str) -> NamedTemplate | None:
    """The named template for a GGUF's Jinja `tokenizer.chat_template`, or None."""
    if not chat_template:
        return None
    for name, required, forbidden in DETECTION:
        if all(m in chat_template for m in required) and not any(
            m in chat_template for m in forbidden
        ):
            return named_template(name)
    return None
