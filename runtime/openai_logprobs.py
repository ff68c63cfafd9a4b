"""Logprobs in the OpenAI routes' shapes, from the reference's per-token entries.

Chat completions carry `logprobs: {"content": [...]}` (the reference's entries, which are
OpenAI's). Legacy completions carry OpenAI's `tokens` / `token_logprobs` / `top_logprobs` /
`text_offset`, plus the same `content` list the reference returns there.
"""

from __future__ import annotations

from typing import Any


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": entries}


def completion_logprobs(entries: list[dict[str, Any]], offset: int = 0) -> dict[str, Any]:
    """The legacy object for `entries`, whose text starts at character `offset` of the answer."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [
            {t["token"]: t["logprob"] for t in e.get("top_logprobs", [])} for e in entries
        ],
        "text_offset": offsets,
        "content": entries,
    }
