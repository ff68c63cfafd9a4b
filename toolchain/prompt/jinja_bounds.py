"""Time and memory bounds for the Jinja fallback, on top of jinja2's immutable sandbox.

The sandbox stops attribute escapes but not work: `{% for %}` nested over `range(100000)`
runs for hours without printing, `'a' * 10**8` allocates 100 MB in one operation, and
`10**10**10` never finishes (Jinja even folds it at compile time). `BoundedEnvironment`
makes every loop step, `~` concatenation, `* ** + %` operation and sized call go through
checks against the current render's `Budget`: results stay under `MAX_VALUE` characters
(or items), integers under `MAX_INT_BITS` bits, loop steps under `MAX_STEPS`, and the
render under its deadline.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from toolchain.errors import MfcError

#: The longest string or list one operation may make (the output cap is the same).
MAX_VALUE = 16 << 20
#: The largest integer an operation may make.
MAX_INT_BITS = 1 << 16
#: Loop iterations per render, over all loops.
MAX_STEPS = 1_000_000
#: Seconds per render.
MAX_SECONDS = 10.0


class JinjaLimitError(MfcError):
    """A Jinja chat template went past a bound (time, loop steps, value size)."""


class Budget:
    """What one render may still spend."""

    __slots__ = ("deadline", "seconds", "steps")

    def __init__(self, seconds: float = MAX_SECONDS) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise JinjaLimitError(f"chat template loops exceed {MAX_STEPS} iterations")
        if not self.steps & 255:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise JinjaLimitError(f"chat template execution exceeds {self.seconds:g} seconds")


_budget: contextvars.ContextVar[Budget] = contextvars.ContextVar("jinja_budget")


def current_budget() -> Budget:
    budget = _budget.get(None)
    if budget is None:  # rendering outside `budgeted` (tests): a fresh one
        budget = Budget()
        _budget.set(budget)
    return budget


def start_budget(seconds: float = MAX_SECONDS) -> contextvars.Token[Budget]:
    """A fresh budget for the render about to start; `reset_budget` the token after it."""
    return _budget.set(Budget(seconds))


def reset_budget(token: contextvars.Token[Budget]) -> None:
    _budget.reset(token)


def _too_big(what: str) -> JinjaLimitError:
    return JinjaLimitError(f"chat template {what} exceeds {MAX_VALUE} characters")


def _loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = current_budget()
    for item in iterable:
        budget.step()
        yield item


def _concat(*parts: Any) -> str:
    strings = [str(p) for p in parts]
    if sum(map(len, strings)) > MAX_VALUE:
        raise _too_big("string")
    return "".join(strings)


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


_WIDTH = re.compile(r"%[-#0 +]*(\d*)(?:\.(\d*))?")


def _check_percent(fmt: str, args: Any) -> None:
    """`fmt % args` must not pad past MAX_VALUE (`'%999999999d' % 1`, `'%*d' % (n, 1)`)."""
    for m in _WIDTH.finditer(fmt):
        for group in m.groups():
            if group and (len(group) > 9 or int(group) > MAX_VALUE):
                raise _too_big("format width")
    values = args if isinstance(args, tuple) else (args,)
    for v in values:
        if isinstance(v, int) and abs(v) > MAX_VALUE:
            raise _too_big("format width")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_INT_BITS:
            raise JinjaLimitError(f"chat template number exceeds {MAX_INT_BITS} bits")
    elif operator == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise JinjaLimitError(f"chat template number exceeds {MAX_INT_BITS} bits")
        else:
            count, seq = (right, left) if isinstance(right, int) else (left, right)
            if isinstance(count, int) and _sized(seq) * count > MAX_VALUE:
                raise _too_big("value")
    elif operator == "+" and _sized(left) + _sized(right) > MAX_VALUE:
        raise _too_big("value")
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, right)


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Sized arguments of str/list methods (`ljust(10**9)`, `join`, `replace`, `format`)."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_VALUE:
            raise _too_big("argument")
    receiver = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(receiver, str):
        if name == "join" and args:
            items = list(args[0]) if not isinstance(args[0], str) else [args[0]]
            if sum(map(_sized, items)) + len(receiver) * len(items) > MAX_VALUE:
                raise _too_big("string")
        elif name == "replace" and len(args) >= 2:
            old, new = str(args[0]), str(args[1])
            count = receiver.count(old) if old else len(receiver) + 1
            if len(receiver) + count * max(len(new) - len(old), 0) > MAX_VALUE:
                raise _too_big("string")
        elif name in ("format", "format_map"):
            _check_percent("", args)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with loops, operators and calls checked against a Budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["__mfc_loop"] = _loop
        self.globals["__mfc_concat"] = _concat
        for name in ("center", "indent", "wordwrap"):
            self.filters[name] = _checked_filter(self.filters[name])
        self.filters["join"] = _checked_join(self.filters["join"])
        self.filters["replace"] = _checked_replace(self.filters["replace"])
        self.filters["format"] = _checked_format(self.filters["format"])

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("__mfc_loop", "load"), [loop.iter], [], None, None)
        for concat in list(tree.find_all(nodes.Concat)):
            call = nodes.Call(nodes.Name("__mfc_concat", "load"), concat.nodes, [], None, None)
            _replace_node(tree, concat, call)
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        current_budget().check_time()
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _replace_node(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    """Put `new` where `old` is in `tree` (Concat nodes are fields of their parents)."""
    for parent in tree.find_all(nodes.Node):
        for field, value in parent.iter_fields():
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return


def _checked_filter(fn: Any) -> Any:
    @functools.wraps(fn)  # keeps jinja's pass_environment/pass_eval_context marks
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_call(None, args[1:], kwargs)
        result = fn(*args, **kwargs)
        if _sized(result) > MAX_VALUE:
            raise _too_big("value")
        return result

    return checked


def _checked_join(fn: Any) -> Any:
    @functools.wraps(fn)
    def join(*args: Any, **kwargs: Any) -> Any:
        items = list(args[1])
        sep = str(args[2]) if len(args) > 2 else str(kwargs.get("d", ""))
        if sum(len(str(i)) for i in items) + len(sep) * len(items) > MAX_VALUE:
            raise _too_big("string")
        return fn(args[0], items, *args[2:], **kwargs)

    return join


def _checked_replace(fn: Any) -> Any:
    @functools.wraps(fn)
    def replace(*args: Any, **kwargs: Any) -> Any:
        s = str(args[1])
        if len(args) >= 4:
            _check_call(s.replace, (args[2], args[3]), {})
        return fn(*args, **kwargs)

    return replace


def _checked_format(fn: Any) -> Any:
    @functools.wraps(fn)
    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_percent(str(value), args or tuple(kwargs.values()))
        return fn(value, *args, **kwargs)

    return format_
