"""text/template's builtin functions, with Go's argument conventions and error texts.

A `GoFunc` declares its parameters the way the evaluator needs to know them: `value`
(Go's reflect.Value parameters: sees NO_VALUE and nil distinctly), `any` (interface{}:
both arrive as None) or `string`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as _urlquote

from toolchain.gotemplate.gofmt import is_print, sprint, sprintln
from toolchain.gotemplate.printf import Flags, format_arg, sprintf
from toolchain.gotemplate.values import (
    NO_VALUE,
    GoBytes,
    GoMap,
    GoSlice,
    GoStruct,
    GoUint8,
    from_bytes,
    go_len,
    go_runes,
    is_nil,
    is_true,
    kind,
    to_bytes,
    type_name,
)


class FuncError(Exception):
    """A function returned an error: the evaluator reports `error calling NAME: MESSAGE`."""


@dataclass(frozen=True, slots=True)
class GoFunc:
    fn: Callable[..., Any]
    params: tuple[str, ...]  # fixed parameter kinds
    variadic: str | None = None  # kind of the variadic tail, if any
    never_nil: bool = False  # never returns None (a nil interface)


ZERO_VALUE_PANIC = "reflect: call of reflect.Value.Type on zero Value"


def _iface(v: Any) -> Any:
    """indirectInterface: a nil interface becomes the invalid value."""
    return NO_VALUE if v is None else v


def truth(v: Any) -> bool:
    return is_true(v)


def _basic(v: Any) -> str:
    k = kind(v)
    return k if k in ("bool", "int", "uint", "float", "complex", "string") else "invalid"


def _lt_str(a: str, b: str) -> bool:
    if a.isascii() and b.isascii():
        return a < b
    return to_bytes(a) < to_bytes(b)


def _comparable(v: Any) -> bool:
    if isinstance(v, (list, dict, bytes)):
        return False
    if isinstance(v, GoStruct) and not v.go_pointer:
        return all(_comparable(getattr(v, f)) for f in v.go_fields)
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, GoStruct) and a.go_pointer:
        return a is b
    if isinstance(a, GoStruct):
        return type(a) is type(b) and all(_same(getattr(a, f), getattr(b, f)) for f in a.go_fields)
    return type_name(a) == type_name(b) and bool(a == b)


_SAME_KIND_EQ = frozenset({str, int, float, bool})


def eq(arg1: Any, *rest: Any) -> bool:
    if len(rest) == 1 and type(arg1) is type(rest[0]) and type(arg1) in _SAME_KIND_EQ:
        return bool(arg1 == rest[0])  # the common case: two values of one basic kind
    arg1 = _iface(arg1)
    if not rest:
        raise FuncError("missing argument for comparison")
    k1 = _basic(arg1)
    for arg in rest:
        arg = _iface(arg)
        k2 = _basic(arg)
        t = False
        if k1 != k2:
            if (k1 == "int" and k2 == "uint") or (k1 == "uint" and k2 == "int"):
                t = int(arg1) == int(arg)
            elif arg1 is not NO_VALUE and arg is not NO_VALUE:
                raise FuncError("incompatible types for comparison")
        elif k1 != "invalid":
            t = arg1 == arg
        else:
            k_a, k_b = kind(arg1), kind(arg)
            if k_a != k_b and k_a != "invalid" and k_b != "invalid":  # noqa: PLR1714
                raise FuncError(
                    f"non-comparable types {format_arg(arg1, 's', Flags())}: {type_name(arg1)}, "
                    f"{type_name(arg)}: {format_arg(arg, 'v', Flags())}"
                )
            if is_nil(arg1) or is_nil(arg):
                t = is_nil(arg) == is_nil(arg1)
            else:
                if not _comparable(arg):
                    raise FuncError(
                        f"non-comparable type {format_arg(arg, 's', Flags())}: {type_name(arg)}"
                    )
                t = _same(arg1, arg)
        if t:
            return True
    return False


def ne(a: Any, b: Any) -> bool:
    return not eq(a, b)


def lt(a: Any, b: Any) -> bool:
    a, b = _iface(a), _iface(b)
    k1, k2 = _basic(a), _basic(b)
    if k1 == "invalid" or k2 == "invalid":
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        if (k1 == "int" and k2 == "uint") or (k1 == "uint" and k2 == "int"):
            return int(a) < int(b)
        raise FuncError("incompatible types for comparison")
    if k1 in ("bool", "complex"):
        raise FuncError("invalid type for comparison")
    if k1 == "string":
        return _lt_str(a, b)
    return bool(a < b)


def le(a: Any, b: Any) -> bool:
    return lt(a, b) or eq(a, b)


def gt(a: Any, b: Any) -> bool:
    return not le(a, b)


def ge(a: Any, b: Any) -> bool:
    return not lt(a, b)


def not_(a: Any) -> bool:
    return not is_true(a)


def length(item: Any) -> int:
    if item is None or (isinstance(item, GoStruct) and item.go_is_nil()):
        raise FuncError("len of nil pointer")
    if item is NO_VALUE:
        raise FuncError(ZERO_VALUE_PANIC)
    if isinstance(item, (str, list, dict, bytes)):
        return go_len(item)
    raise FuncError(f"len of type {_deref_type(item)}")


def _deref_type(v: Any) -> str:
    t = type_name(v)
    return t[1:] if isinstance(v, GoStruct) and v.go_pointer else t


def _index_arg(index: Any, cap: int) -> int:
    k = kind(index)
    if k in ("int", "uint"):
        x = int(index)
    elif k == "invalid":
        raise FuncError("cannot index slice/array with nil")
    else:
        raise FuncError(f"cannot index slice/array with type {type_name(index)}")
    if x < 0 or x > cap:
        raise FuncError(f"index out of range: {x}")
    return x


def index(item: Any, *indexes: Any) -> Any:
    item = _iface(item)
    if item is NO_VALUE:
        raise FuncError("index of untyped nil")
    for ix in indexes:
        ix = _iface(ix)
        if item is None or (isinstance(item, GoStruct) and item.go_is_nil()):
            raise FuncError("index of nil pointer")
        if isinstance(item, str):
            b = to_bytes(item)
            x = _index_arg(ix, len(b))
            if x == len(b):
                raise FuncError("reflect: string index out of range")
            item = GoUint8(b[x])
        elif isinstance(item, (list, bytes)):
            x = _index_arg(ix, len(item))
            if x == len(item):
                raise FuncError("reflect: slice index out of range")
            item = GoUint8(item[x]) if isinstance(item, bytes) else item[x]
        elif isinstance(item, dict):
            if ix is NO_VALUE:
                raise FuncError("value is nil; should be of type string")
            if type(ix) is not str:
                raise FuncError(f"value has type {type_name(ix)}; should be string")
            item = item[ix] if ix in item else (item.zero() if isinstance(item, GoMap) else None)
        else:
            raise FuncError(f"can't index item of type {_deref_type(item)}")
    return item


def slice_(item: Any, *indexes: Any) -> Any:
    if len(indexes) == 1 and type(indexes[0]) is int and isinstance(item, list):
        x = indexes[0]
        if 0 <= x <= len(item):  # the common case: the tail of a slice
            return type(item)(item[x:]) if isinstance(item, GoSlice) else item[x:]
    item = _iface(item)
    if item is NO_VALUE:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        seq: Any = to_bytes(item)
    elif isinstance(item, (list, bytes)):
        seq = item
    else:
        raise FuncError(f"can't slice item of type {_deref_type(item)}")
    idx = [0, len(seq), 0]
    for i, ix in enumerate(indexes):
        idx[i] = _index_arg(_iface(ix), len(seq))
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    part = seq[idx[0] : idx[1]]
    if isinstance(item, str):
        return from_bytes(part)
    if isinstance(item, GoBytes):
        return GoBytes(part)
    if isinstance(item, GoSlice):
        out = type(item)(part)
        return out
    return list(part)


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and type(args[0]) is str:
        return str(args[0])
    return sprint(["<no value>" if a is None or a is NO_VALUE else a for a in args])


def html(*args: Any) -> str:
    s = _eval_args(args)
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\0", "\ufffd")
    )


_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026",
       "=": "\\u003D"}  # fmt: skip


def js(*args: Any) -> str:
    out = []
    for ch in go_runes(_eval_args(args)):
        o = ord(ch)
        if ch in _JS:
            out.append(_JS[ch])
        elif o < 0x20:
            out.append(f"\\u{o:04X}")
        elif o < 0x80 or is_print(ch):
            out.append(ch)
        else:
            out.append(f"\\u{o:04X}")
    return "".join(out)


def urlquery(*args: Any) -> str:
    return _urlquote(to_bytes(_eval_args(args)), safe="-_.~").replace("%20", "+")


def _printf(fmt: str, *args: Any) -> str:
    return sprintf(fmt, list(args))


def _call(*_: Any) -> Any:  # replaced by the evaluator (needs the callee's node text)
    raise FuncError("call of nil")


BUILTINS: dict[str, GoFunc] = {
    "and": GoFunc(lambda *a: a, ("value",), "value"),
    "or": GoFunc(lambda *a: a, ("value",), "value"),
    "call": GoFunc(_call, ("value",), "value"),
    "html": GoFunc(html, (), "any", never_nil=True),
    "index": GoFunc(index, ("value",), "value"),
    "slice": GoFunc(slice_, ("value",), "value", never_nil=True),
    "js": GoFunc(js, (), "any", never_nil=True),
    "len": GoFunc(length, ("value",), never_nil=True),
    "not": GoFunc(not_, ("value",), never_nil=True),
    "print": GoFunc(lambda *a: sprint(list(a)), (), "any", never_nil=True),
    "printf": GoFunc(_printf, ("string",), "any", never_nil=True),
    "println": GoFunc(lambda *a: sprintln(list(a)), (), "any", never_nil=True),
    "urlquery": GoFunc(urlquery, (), "any", never_nil=True),
    "eq": GoFunc(eq, ("value",), "value", never_nil=True),
    "ge": GoFunc(ge, ("value", "value"), never_nil=True),
    "gt": GoFunc(gt, ("value", "value"), never_nil=True),
    "le": GoFunc(le, ("value", "value"), never_nil=True),
    "lt": GoFunc(lt, ("value", "value"), never_nil=True),
    "ne": GoFunc(ne, ("value", "value"), never_nil=True),
}
