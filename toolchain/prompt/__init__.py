"""Chat prompt rendering as Ollama does it, on mfc's Go template engine.

- `render_prompt(template, messages=..., tools=..., system=..., prompt=..., suffix=..., think=...)`
- `parse_prompt_template(source)`, `execute(pt, Values)`, `collate`, `template_vars`
- `detect_template(chat_template)` -> `NamedTemplate | None`; `named_template(name)`
- `render_jinja_chat(...)`: the sandboxed fallback for a model's own Jinja template
- `tool_call_tag(template)`: the text that opens a tool call in the template's output
"""

from toolchain.prompt.data import RequestError
from toolchain.prompt.jinja import JinjaChatError, render_jinja_chat
from toolchain.prompt.named import NamedTemplate, detect_template, named_template, template_names
from toolchain.prompt.render import (
    DEFAULT_TEMPLATE,
    PromptTemplate,
    Values,
    collate,
    execute,
    parse_prompt_template,
    render_prompt,
    template_vars,
)
from toolchain.prompt.tooltag import (
    BARE_JSON,
    go_trim_space,
    tool_call_tag,
    tool_call_tag_of_source,
)

__all__ = [
    "BARE_JSON",
    "DEFAULT_TEMPLATE",
    "JinjaChatError",
    "NamedTemplate",
    "PromptTemplate",
    "RequestError",
    "Values",
    "collate",
    "detect_template",
    "execute",
    "go_trim_space",
    "named_template",
    "parse_prompt_template",
    "render_jinja_chat",
    "render_prompt",
    "template_names",
    "template_vars",
    "tool_call_tag",
    "tool_call_tag_of_source",
]
