"""The Modelfile IR: one frozen dataclass per instruction, each with its source span.

The front end (toolchain/frontend) produces a `Modelfile`; every later pass reads it and
can point a diagnostic at the instruction that caused a problem through its `span`.
Values are exactly as the reference parser yields them (quotes removed, no escapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.errors import Span


@dataclass(frozen=True, slots=True)
class Instruction:
    span: Span
    value: str

    #: the reference's command name (`model` for FROM); overridden per class
    command = ""

    @property
    def kind(self) -> str:
        """The instruction's keyword in lower case (`from`, `parameter`, ...)."""
        return type(self).__name__.lower()


@dataclass(frozen=True, slots=True)
class From(Instruction):
    command = "model"


@dataclass(frozen=True, slots=True)
class Adapter(Instruction):
    command = "adapter"


@dataclass(frozen=True, slots=True)
class Template(Instruction):
    command = "template"


@dataclass(frozen=True, slots=True)
class System(Instruction):
    command = "system"


@dataclass(frozen=True, slots=True)
class License(Instruction):
    command = "license"


@dataclass(frozen=True, slots=True)
class Requires(Instruction):
    command = "requires"


@dataclass(frozen=True, slots=True)
class Draft(Instruction):
    command = "draft"


@dataclass(frozen=True, slots=True)
class Renderer(Instruction):
    command = "renderer"


@dataclass(frozen=True, slots=True)
class Parser(Instruction):
    command = "parser"


@dataclass(frozen=True, slots=True)
class Quantize(Instruction):
    """`QUANTIZE <type>`: mfc's own extension, the Modelfile spelling of `--quantize`."""

    command = "quantize"


@dataclass(frozen=True, slots=True)
class Parameter(Instruction):
    """`PARAMETER <name> <value>`; `name` keeps its case, as the reference does."""

    name: str = ""

    @property
    def command(self) -> str:  # type: ignore[override]
        return self.name


@dataclass(frozen=True, slots=True)
class Message(Instruction):
    """`MESSAGE <role> <content>`; `value` is the content, as `role: content` is the reference's."""

    role: str = ""

    command = "message"


@dataclass(frozen=True, slots=True)
class Modelfile:
    """A parsed Modelfile: instructions in source order, nothing merged."""

    instructions: tuple[Instruction, ...]
    path: str = "<stdin>"
    source: str = field(default="", repr=False, compare=False)

    def commands(self) -> list[tuple[str, str]]:
        """The reference parser's view: `(name, args)` pairs (`("message", "user: hi")`)."""
        out: list[tuple[str, str]] = []
        for ins in self.instructions:
            if isinstance(ins, Message):
                out.append(("message", f"{ins.role}: {ins.value}"))
            else:
                out.append((ins.command, ins.value))
        return out
