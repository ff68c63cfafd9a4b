"""Go's text/template language, implemented in Python, with Ollama's function map.

    tmpl = parse("{{ range .Messages }}{{ .Role }}: {{ .Content }}\\n{{ end }}")
    text = tmpl.execute({"Messages": [...]})

`parse` is cached by source text. Errors are `TemplateError`s carrying Go's message
(`template: :1: unclosed action`, `template: :1:3: executing "" at <.X.Y>: ...`).
"""

from toolchain.gotemplate.template import (
    DEFAULT_LIMITS,
    Limits,
    Template,
    TemplateError,
    parse,
    parse_with,
)
from toolchain.gotemplate.values import NO_VALUE, GoBytes, GoMap, GoSlice, GoStruct

__all__ = [
    "DEFAULT_LIMITS",
    "NO_VALUE",
    "GoBytes",
    "GoMap",
    "GoSlice",
    "GoStruct",
    "Limits",
    "Template",
    "TemplateError",
    "parse",
    "parse_with",
]
