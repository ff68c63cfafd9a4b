"""The Modelfile IR: one frozen dataclass per instruction, each with its source span.

The front end (toolchain/frontend) produces a `Modelfile`; every later pass reads it and
can point a diagnostic at the instruction that caused a problem through its `span`.
Values are exactly as the reference parser yields them (quotes removed, no escapes).

Spans: `span` covers the whole instruction (keyword to the end of the value, closing
quotes included); `value_span` covers the value's text inside its quotes, so a position
inside a TEMPLATE maps to the Modelfile as (value_span.line + l - 1, value_span.col + c - 1
on the first line, c on later ones). Lines are counted the way editors count them (CRLF,
CR or LF end a line); columns count code points from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.errors import Span


@dataclass(frozen=True, slots=True)
class Instruction:
    span: Span
    value: str
    value_span: Span | None = field(default=None, kw_only=True, compare=False)

    #: the reference's command name (`model` for FROM); overridden per class
    command = ""

    @property
    def kind(self) -> str:
        """The instruction's keyword in lower case (`from`, `parameter`, ...)."""
        return type(self).__name__.lower()

    def to_json(self) -> dict[str, object]:
        """The `mfc parse --json` record of this instruction."""
        out: dict[str, object] = {"kind": self.kind}
        if isinstance(self, Parameter):
            out["name"] = self.name
        if isinstance(self, Message):
            out["role"] = self.role
            out["content"] = self.value
        out["value"] = self.value
        out["span"] = self.span.to_json()
        if self.value_span is not None:
            out["value_span"] = self.value_span.to_json()
        return out


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
class Imatrix(Instruction):
    """`IMATRIX <file>`: mfc's own; the importance matrix QUANTIZE uses (`--imatrix`), or
    calibration text it is computed from."""

    command = "imatrix"


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
class Comment:
    """A `#` line. Not an instruction (the reference drops comments); kept for `mfc fmt`."""

    span: Span
    text: str


#: IR class per keyword (lower case), for the front end and for tools building IR by hand
INSTRUCTION_CLASSES: dict[str, type[Instruction]] = {
    "from": From,
    "adapter": Adapter,
    "template": Template,
    "system": System,
    "license": License,
    "requires": Requires,
    "draft": Draft,
    "renderer": Renderer,
    "parser": Parser,
    "quantize": Quantize,
    "imatrix": Imatrix,
    "parameter": Parameter,
    "message": Message,
}


@dataclass(frozen=True, slots=True)
class Modelfile:
    """A parsed Modelfile: instructions in source order, nothing merged."""

    instructions: tuple[Instruction, ...]
    path: str = "<stdin>"
    source: str = field(default="", repr=False, compare=False)
    comments: tuple[Comment, ...] = field(default=(), repr=False, compare=False)

    def commands(self) -> list[tuple[str, str]]:
        """The reference parser's view: `(name, args)` pairs (`("message", "user: hi")`)."""
        out: list[tuple[str, str]] = []
        for ins in self.instructions:
            if isinstance(ins, Message):
                out.append(("message", f"{ins.role}: {ins.value}"))
            else:
                out.append((ins.command, ins.value))
        return out

    def to_json(self) -> dict[str, object]:
        """The `mfc parse --json` document: the file, its instructions, the reference's commands."""
        return {
            "file": self.path,
            "instructions": [ins.to_json() for ins in self.instructions],
            "commands": [list(pair) for pair in self.commands()],
        }
