"""Which of llama.cpp's built-in pre-tokenizers (`tokenizer.ggml.pre`) a tokenizer.json uses.

llama.cpp cannot run a tokenizer.json's regexes; it re-implements a fixed set of
pre-tokenizers and the GGUF names one. llama.cpp's own converter finds the name by
hashing the token ids a reference text encodes to, which needs the `tokenizers`
library. We read the pre-tokenizer configuration instead: its steps (Split regexes,
ByteLevel, Digits) are what decides how text is cut, so a table of known step
sequences identifies it without running anything.
"""

from __future__ import annotations

from typing import Any

#: the Split regex of Llama 3's tokenizer (also Falcon 3, ...)
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: the Split regex of Qwen2 / Qwen2.5 / Qwen3: Llama 3's with single digits
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
#: cuts text into runs of newlines and runs of anything else (Laguna splits these first)
NEWLINE_RUNS_REGEX = r"[^\n]+|[\n]+"

Step = tuple[Any, ...]

#: llama.cpp pre-tokenizer name -> the pre-tokenizer steps that select it
KNOWN: dict[str, tuple[Step, ...]] = {
    "llama-bpe": (("Split", LLAMA3_REGEX), ("ByteLevel", False)),
    "qwen2": (("Split", QWEN2_REGEX), ("ByteLevel", False)),
    "gpt-2": (("ByteLevel", True),),
    "smollm": (("Digits", True), ("ByteLevel", True)),
    "laguna": (("Split", NEWLINE_RUNS_REGEX), ("Split", QWEN2_REGEX), ("ByteLevel", False)),
}


def steps(pre_tokenizer: object) -> tuple[Step, ...]:
    """The pre-tokenizer as a flat tuple of the steps that affect splitting."""
    if not isinstance(pre_tokenizer, dict):
        return ()
    kind = pre_tokenizer.get("type")
    if kind == "Sequence":
        out: list[Step] = []
        for item in pre_tokenizer.get("pretokenizers", []):
            out.extend(steps(item))
        return tuple(out)
    if kind == "Split":
        pattern = pre_tokenizer.get("pattern", {})
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        return (
            (
                "Split",
                regex if regex is not None else pattern.get("String"),
            ),
        )
    if kind == "ByteLevel":
        return (("ByteLevel", bool(pre_tokenizer.get("use_regex", True))),)
    if kind == "Digits":
        return (("Digits", bool(pre_tokenizer.get("individual_digits", False))),)
    return ((str(kind),),)


def identify(pre_tokenizer: object) -> str | None:
    """llama.cpp's name for this pre-tokenizer, or None if it is not one we know."""
    found = steps(pre_tokenizer)
    for name, known in KNOWN.items():
        if found == known:
            return name
    return None
