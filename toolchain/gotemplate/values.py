"""How Go values are represented while a template runs.

Plain Python values stand for the types `encoding/json` produces and templates create:

    str -> string      bool -> bool     int -> int      float -> float64
    complex -> complex128               list -> []interface {}
    dict -> map[string]interface {}     None -> a nil interface{} (a JSON null, a missing key)

`NO_VALUE` is Go's invalid `reflect.Value` (what a pipeline yields for a nil interface; it
prints `<no value>`). Typed data (the structs and named types Ollama passes to templates)
subclasses `GoStruct`, `GoSlice` or `GoMap`: each declares its Go type name, its exported
fields and the few niladic methods a template may call. Nothing else of a Python object is
reachable from a template: field lookup goes through those declarations only.

Each of these types says how encoding/json sees it (`go_json()`, the hook of
`toolchain.gojson`): nil slices and maps as null, structs as their fields under their JSON
tags with omitempty, or what their MarshalJSON (`go_json_value()`) gives.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any, ClassVar

from toolchain.gojson import GoStruct as JSONStruct


class _NoValue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_VALUE"

    def __bool__(self) -> bool:
        return False

    def go_json(self) -> None:
        return None


NO_VALUE: Any = _NoValue()

# a niladic Go method: receives the receiver, returns a value
Method = Callable[[Any], Any]


class GoStruct:
    """A Go struct value (or a pointer to one when `go_pointer`)."""

    __slots__ = ()
    go_type: ClassVar[str] = "struct {}"
    go_pointer: ClassVar[bool] = False
    #: exported fields in declaration order (the Python attribute has the same name)
    go_fields: ClassVar[tuple[str, ...]] = ()
    #: (Go field, JSON name, omitempty) in declaration order; empty = Go field names, no omitempty
    go_json_tags: ClassVar[tuple[tuple[str, str, bool], ...]] = ()
    go_methods: ClassVar[dict[str, Method]] = {}

    def go_string(self) -> str | None:
        """The result of the type's String() method, or None when it has none."""
        return None

    def go_is_nil(self) -> bool:
        """Whether this is a nil pointer of the type (only a `go_pointer` type can be one)."""
        return False

    def go_json_value(self) -> Any:
        """Return a value to encode instead of the struct (a MarshalJSON), or NotImplemented."""
        return NotImplemented

    def go_json(self) -> Any:
        """What encoding/json encodes: the MarshalJSON value, else the fields under their tags."""
        alt = self.go_json_value()
        return json_fields(self) if alt is NotImplemented else alt

    def type_name(self) -> str:
        return ("*" if self.go_pointer else "") + self.go_type


class GoSlice(list[Any]):
    """A typed Go slice; `is_nil` distinguishes a nil slice (JSON `null`) from an empty one."""

    go_type: ClassVar[str] = "[]interface {}"
    go_methods: ClassVar[dict[str, Method]] = {}
    is_nil: bool = False

    def go_string(self) -> str | None:
        return None

    def go_json_value(self) -> Any:
        """Return a value to encode instead of the slice (a MarshalJSON), or NotImplemented."""
        return NotImplemented

    def go_json(self) -> Any:
        if self.is_nil:
            return None
        alt = self.go_json_value()
        return list(self) if alt is NotImplemented else alt


class GoMap(dict[str, Any]):
    """A typed Go map with string keys; `zero()` is the element type's zero value."""

    go_type: ClassVar[str] = "map[string]interface {}"
    go_methods: ClassVar[dict[str, Method]] = {}
    #: elements are interface{} values (error texts then name `interface {}`)
    elem_iface: ClassVar[bool] = True
    is_nil: bool = False

    def zero(self) -> Any:
        return None

    def go_string(self) -> str | None:
        return None

    def go_json(self) -> Any:
        return None if self.is_nil else dict(self)


class GoBytes(bytes):
    """[]byte (Ollama's ImageData): prints as numbers, JSON-encodes as base64."""

    go_type: ClassVar[str] = "[]uint8"


class GoUint8(int):
    """A byte, as `index` of a string yields (prints as a number, compares as uint)."""

    __slots__ = ()


def json_fields(v: GoStruct) -> JSONStruct:
    """A struct's exported fields under their JSON names, empty omitempty ones left out."""
    spec = v.go_json_tags or tuple((f, f, False) for f in v.go_fields)
    out = JSONStruct()
    for field, name, omitempty in spec:
        value = getattr(v, field)
        if not (omitempty and _json_empty(value)):
            out[name] = value
    return out


def _json_empty(v: Any) -> bool:
    """Go's isEmptyValue, which omitempty uses: false, 0, nil, empty string/slice/map."""
    if v is None or v is NO_VALUE:
        return True
    if isinstance(v, (GoSlice, GoMap)) and v.is_nil:
        return True
    if isinstance(v, GoStruct):
        return v.go_is_nil()
    if isinstance(v, (str, list, dict, bytes)):
        return len(v) == 0
    if isinstance(v, (bool, int, float)):
        return v == 0
    return False


def type_name(v: Any) -> str:
    """Go's `%T` / reflect.Type.String() of a value."""
    if v is None or v is NO_VALUE:
        return "<nil>"
    name = _TYPE_NAMES.get(type(v))
    if name is not None:
        return name
    if isinstance(v, GoStruct):
        return v.type_name()
    if isinstance(v, (GoSlice, GoMap, GoBytes)):
        return v.go_type
    return "interface {}"


def is_true(v: Any) -> bool:
    """Go's template truth: zero values, nil and empty collections are false; structs (and
    pointers to them that are not nil) true."""
    if type(v) in PLAIN_TRUTH:
        return bool(v)
    if v is None or v is NO_VALUE:
        return False
    if isinstance(v, GoStruct):
        return not v.go_is_nil()
    if isinstance(v, (str, list, dict, bytes)):
        return len(v) > 0
    if isinstance(v, (bool, int, float, complex)):
        return v != 0
    return True


def is_nil(v: Any) -> bool:
    """nil pointer / interface / slice / map (Go's `isNil` in funcs.go)."""
    if v is None or v is NO_VALUE:
        return True
    if isinstance(v, (GoSlice, GoMap)):
        return v.is_nil
    return isinstance(v, GoStruct) and v.go_is_nil()


def kind(v: Any) -> str:
    """reflect.Kind names the evaluator needs: invalid interface bool int uint float complex
    string slice map struct ptr."""
    k = _KINDS.get(type(v))
    if k is not None:
        return k
    if isinstance(v, (list, GoBytes)):
        return "slice"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, GoStruct):
        return "ptr" if v.go_pointer else "struct"
    return "func"


# types whose Python truth is Go's template truth, and the kinds of the plain types
PLAIN_TRUTH = frozenset({str, bool, int, float, list, dict, type(None), _NoValue})
_KINDS = {str: "string", bool: "bool", int: "int", float: "float", complex: "complex",
          GoUint8: "uint", list: "slice", dict: "map", type(None): "interface",
          _NoValue: "invalid"}  # fmt: skip
_TYPE_NAMES = {str: "string", bool: "bool", int: "int", float: "float64",
               list: "[]interface {}", dict: "map[string]interface {}", complex: "complex128",
               GoUint8: "uint8"}  # fmt: skip


def go_len(v: Any) -> int:
    """Length as Go counts it: strings in UTF-8 bytes."""
    if isinstance(v, str):
        return len(v) if v.isascii() else len(v.encode("utf-8", "surrogateescape"))
    return len(v)


def to_bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _per_byte_replace(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    return "\ufffd" * (err.end - err.start), err.end


codecs.register_error("go_runes", _per_byte_replace)


def go_runes(s: str) -> str:
    """The string as Go's range-over-string sees it: each invalid byte becomes U+FFFD."""
    if s.isascii() or not any(0xDC80 <= ord(c) <= 0xDCFF for c in s):
        return s
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "go_runes")
