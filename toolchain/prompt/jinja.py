"""The fallback for models whose chat template matches no named template: render the
model's own Jinja `tokenizer.chat_template` the way Hugging Face's apply_chat_template
does, in Jinja's immutable sandbox (no attribute escapes, no I/O), bounded in time, loop
steps and value sizes by `toolchain.prompt.jinja_bounds`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from typing import Any

from toolchain.errors import MfcError

MAX_OUTPUT = 16 << 20
#: Seconds one render may take.
MAX_SECONDS = 10.0


class JinjaChatError(MfcError):
    """The model's Jinja chat template failed (raise_exception, syntax, sandbox); `kind` is
    "limit" when it ran out of time, loop steps or value size, else "exec"."""

    def __init__(self, message: str, kind: str = "exec") -> None:
        super().__init__(message)
        self.kind = kind


def _raise_exception(message: str) -> None:
    raise JinjaChatError(f"chat template: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)  # fmt: skip


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=32)
def _compile(chat_template: str) -> Any:
    # jinja2 is imported here, not with toolchain.prompt: `mfc check` never needs it
    from jinja2 import TemplateError as JinjaTemplateError
    from jinja2.ext import loopcontrols

    from toolchain.prompt.jinja_bounds import BoundedEnvironment, JinjaLimitError

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(chat_template)
    except JinjaLimitError as exc:
        raise JinjaChatError(exc.message, "limit") from None
    except JinjaTemplateError as exc:
        raise JinjaChatError(f"chat template does not compile: {exc}") from None


def render_jinja_chat(  # noqa: PLR0917
    chat_template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render `messages` (and `tools`) with the model's Jinja chat template."""
    from jinja2 import TemplateError as JinjaTemplateError

    from toolchain.prompt.jinja_bounds import JinjaLimitError, reset_budget, start_budget

    template = _compile(chat_template)
    context = {
        "messages": messages,
        "tools": tools,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
        **extra,
    }
    out: list[str] = []
    size = 0
    budget = start_budget(MAX_SECONDS)
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                message = f"chat template output exceeds {MAX_OUTPUT} characters"
                raise JinjaChatError(message, "limit")
            out.append(chunk)
    except JinjaChatError:
        raise
    except JinjaLimitError as exc:
        raise JinjaChatError(exc.message, "limit") from None
    except JinjaTemplateError as exc:  # includes SecurityError from the sandbox
        raise JinjaChatError(f"chat template failed: {exc}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError) as exc:
        raise JinjaChatError(f"chat template failed: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise JinjaChatError("chat template failed: nesting too deep", "limit") from None
    finally:
        reset_budget(budget)
    return "".join(out)
