"""Prompts from requests: the model's Go template through toolchain.prompt, as the reference.

This is the one place the runtime turns messages/prompt/system/tools into prompt text; the
template language itself lives in `toolchain.gotemplate` and `toolchain.prompt`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.errors import ApiError
from runtime.models import ServedModel
from toolchain.errors import MfcError


def _render(template: str | None, **values: Any) -> str:
    from toolchain.prompt import RequestError, render_prompt

    try:
        return render_prompt(template, **values)
    except RequestError as exc:
        raise ApiError(400, exc.message) from None
    except MfcError as exc:
        # an execution error is the reference's 500; a render limit (ours) is the request's
        raise ApiError(400 if getattr(exc, "kind", "") == "limit" else 500, exc.message) from None


def _render_jinja(model: ServedModel, messages: list[dict[str, Any]], tools: Any) -> str:
    """The model's own Jinja chat template, in toolchain.prompt's sandbox."""
    from toolchain.prompt import render_jinja_chat

    bos, eos = model.special_tokens()
    try:
        return render_jinja_chat(
            model.chat_template, messages, tools=tools, bos_token=bos, eos_token=eos
        )
    except MfcError as exc:
        raise ApiError(400 if getattr(exc, "kind", "") == "limit" else 500, exc.message) from None


def chat_messages(model: ServedModel, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation the model sees: model MESSAGEs + request messages, with the model
    SYSTEM first unless the request starts with its own system message."""
    out = model.messages + messages
    starts_with_system = bool(messages) and str(messages[0].get("role", "")).lower() == "system"
    if model.system and not starts_with_system:
        out.insert(0, {"role": "system", "content": model.system})
    return out


def chat_prompt(
    model: ServedModel,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    think: bool | str | None,
) -> str:
    if model.uses_jinja:
        return _render_jinja(model, messages, tools)
    return _render(model.template, messages=messages, tools=tools, think=think)


def fit_chat(
    model: ServedModel,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None,
    think: bool | str | None,
    count: Callable[[str], int],
    num_ctx: int,
    truncate: bool,
) -> str:
    """The chat prompt, dropping the oldest non-system messages until it fits `num_ctx`
    (the last message always stays), as the reference does when `truncate` is on."""
    msgs = list(messages)
    while True:
        prompt = chat_prompt(model, msgs, tools, think)
        if not truncate or count(prompt) <= num_ctx:
            return prompt
        droppable = [i for i, m in enumerate(msgs[:-1]) if str(m.get("role")) != "system"]
        if not droppable:
            return prompt
        del msgs[droppable[0]]


def generate_prompt(
    model: ServedModel,
    prompt: str,
    *,
    system: str,
    template: str,
    suffix: str,
    think: bool | str | None,
    with_model_messages: bool,
) -> str:
    """/api/generate's prompt: the request `template` (if any) or the model's, with the
    request or model system, the model MESSAGEs (unless `context` continues a previous
    answer) and the user prompt; `suffix` takes the fill-in-the-middle path."""
    return _render(
        template or model.template,
        prompt=prompt,
        suffix=suffix or None,
        system=system or None,
        model_system=model.system or None,
        model_messages=model.messages if with_model_messages else None,
        think=think,
    )
