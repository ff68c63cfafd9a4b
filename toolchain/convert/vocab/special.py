"""Special token ids, BOS/EOS insertion and the chat template, from the tokenizer files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.convert.hf_dir import HFDir, read_json

#: special token kind -> the word llama.cpp's key uses (`tokenizer.ggml.<word>_token_id`)
KEY_WORDS: dict[str, str] = {
    "bos": "bos",
    "eos": "eos",
    "unk": "unknown",
    "sep": "seperator",  # sic: llama.cpp's spelling
    "pad": "padding",
    "cls": "cls",
    "mask": "mask",
    "eot": "eot",
    "eom": "eom",
}


def added_tokens(hf: HFDir) -> list[dict[str, Any]]:
    """Added tokens with id, content and special flag, from whichever file lists them."""
    found: dict[int, dict[str, Any]] = {}
    listed = hf.tokenizer_json.get("added_tokens")
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, dict) and isinstance(item.get("id"), int):
                found[item["id"]] = item
    decoder = hf.tokenizer_config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        for key, item in decoder.items():
            if isinstance(item, dict) and str(key).isdigit():
                found.setdefault(int(key), {**item, "id": int(key)})
    extra = read_json(hf.file("added_tokens.json"))
    for content, token_id in extra.items():
        if isinstance(token_id, int):
            found.setdefault(token_id, {"id": token_id, "content": content, "special": False})
    return [found[i] for i in sorted(found) if isinstance(found[i].get("content"), str)]


def looks_special(text: str) -> bool:
    """Added tokens some models forget to flag as special (chat markers, gemma's unused)."""
    return (
        (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or (text.startswith("<unused") and text.endswith(">"))
        or text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
    )


def _content(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def special_token_text(hf: HFDir, kind: str) -> str | None:
    """The text of the `kind` special token as tokenizer_config / special_tokens_map name it."""
    return _content(hf.tokenizer_config.get(f"{kind}_token")) or _content(
        hf.special_tokens_map.get(f"{kind}_token")
    )


def special_ids(hf: HFDir, token_ids: dict[str, int], kinds: tuple[str, ...]) -> dict[str, int]:
    """kind -> token id, for each kind the tokenizer names (by text, else config.json's id)."""
    out: dict[str, int] = {}
    for kind in kinds:
        text = special_token_text(hf, kind)
        if text is not None and text in token_ids:
            out[kind] = token_ids[text]
            continue
        for source in (hf.config, hf.generation_config):
            value = source.get(f"{kind}_token_id")
            if isinstance(value, list) and value and isinstance(value[0], int):
                value = value[0]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[kind] = value
                break
    return out


def add_flags(hf: HFDir) -> dict[str, bool]:
    """Whether the tokenizer inserts BOS / EOS around a single text.

    tokenizer_config's add_bos_token / add_eos_token win; otherwise the tokenizer.json
    post-processor says what transformers actually does.
    """
    flags: dict[str, bool] = {}
    processor = hf.tokenizer_json.get("post_processor")
    if hf.tokenizer_json:
        flags = {"bos": False, "eos": False}
        bos, eos = special_token_text(hf, "bos"), special_token_text(hf, "eos")
        steps = processor.get("processors", [processor]) if isinstance(processor, dict) else []
        for step in steps:
            if not isinstance(step, dict):
                continue
            kind = step.get("type")
            if kind in ("RobertaProcessing", "BertProcessing"):
                flags = {"bos": True, "eos": True}
            elif kind == "TemplateProcessing":
                single = [s for s in step.get("single", []) if isinstance(s, dict)]
                first = single[0].get("SpecialToken", {}).get("id") if single else None
                last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
                flags["bos"] = first is not None and first in (bos, special_token_text(hf, "cls"))
                flags["eos"] = last is not None and last in (eos, special_token_text(hf, "sep"))
    for kind in ("bos", "eos"):
        value = hf.tokenizer_config.get(f"add_{kind}_token")
        if isinstance(value, bool):
            flags[kind] = value
    return flags


def chat_templates(hf: HFDir) -> dict[str, str]:
    """name -> template; "" is the default (`tokenizer.chat_template`)."""
    value: Any = hf.tokenizer_config.get("chat_template")
    if value is None:
        jinja = hf.file("chat_template.jinja")
        if jinja.is_file():
            value = _read_text(jinja)
        else:
            value = read_json(hf.file("chat_template.json")).get("chat_template")
    if isinstance(value, str):
        return {"": value}
    out: dict[str, str] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                name = str(item.get("name", ""))
                out["" if name == "default" else name] = item["template"]
    return out


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")
