"""JSON Schema to a llama.cpp GBNF grammar, so `format: {schema}` output always validates.

Written for what structured outputs use: objects (properties in schema order, required
first, `additionalProperties`), arrays (`items`, `prefixItems`, `minItems`/`maxItems`),
strings (`minLength`/`maxLength`, `enum`, `const`, the `date`/`time`/`date-time`/`uuid`
formats), integers with `minimum`/`maximum` (exact digit-range rules), numbers, booleans,
null, type lists, `anyOf`/`oneOf`, `allOf` of objects, and local `$ref`s (`#/$defs/...`).
Strings never contain raw control characters, so the output is always valid JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runtime.errors import ApiError

SPACE = '" "?'
PRIMITIVES = {
    "boolean": '("true" | "false") space',
    "null": '"null" space',
    "number": '("-"? integral-part) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? space',
    "char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "string": '"\\"" char* "\\"" space',
    "integral-part": '"0" | [1-9] [0-9]{0,15}',
    "space": SPACE,
}
_QUOTE = '"\\""'
_DATE = '[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])'
_TIME = (
    '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{3})? '
    '("Z" | [+-] [0-9]{2} ":" [0-9]{2})'
)
_HEX = "[0-9a-fA-F]"
_UUID = f'{_HEX}{{8}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{4}} "-" {_HEX}{{12}}'
FORMATS = {
    name: f"{_QUOTE} {body} {_QUOTE} space"
    for name, body in {
        "date": _DATE,
        "time": _TIME,
        "date-time": f'{_DATE} "T" {_TIME}',
        "uuid": _UUID,
    }.items()
}
MAX_ITEMS_UNROLLED = 64


def literal(value: str) -> str:
    """A GBNF string literal for `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def json_literal(value: Any) -> str:
    """The GBNF for exactly this JSON value, as json.dumps writes it."""
    return literal(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) + " space"


def repeat(item: str, lo: int, hi: int | None, sep: str = "") -> str:
    """`item` lo..hi times (hi None: unbounded), separated by `sep`."""
    if hi is not None and hi == 0:
        return '""'
    first, rest = item, f"{sep} {item}" if sep else item
    if lo == 0:
        inner = repeat(item, 1, hi, sep)
        return f"({inner})?"
    tail_lo = lo - 1
    if hi is None:
        tail = f"({rest})*" if tail_lo == 0 else f"({rest}){{{tail_lo},}}"
    else:
        tail = f"({rest}){{{tail_lo},{hi - 1}}}" if hi - 1 > 0 else ""
    return f"{first} {tail}".strip()


# --- integer ranges ----------------------------------------------------------------------


def _same_length(lo: str, hi: str) -> str:
    """Digit strings of one length between lo and hi (inclusive), as GBNF."""
    if not lo:
        return ""
    if len(lo) == 1:
        return f"[{lo}-{hi}]" if lo != hi else f'"{lo}"'
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ({_same_length(lo[1:], hi[1:])})'
    n = len(lo) - 1
    parts = [f'"{lo[0]}" ({_same_length(lo[1:], "9" * n)})']
    if int(lo[0]) + 1 <= int(hi[0]) - 1:
        parts.append(f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}] [0-9]{{{n}}}")
    parts.append(f'"{hi[0]}" ({_same_length("0" * n, hi[1:])})')
    return " | ".join(parts)


def natural_range(lo: int, hi: int | None) -> str:
    """Non-negative integers in [lo, hi] (hi None: unbounded) without leading zeros."""
    parts = []
    if lo == 0:
        parts.append('"0"')
        lo = 1
    if hi is not None and lo > hi:
        return " | ".join(parts) or '"0"'
    length = len(str(lo))
    while True:
        top = 10**length - 1
        if hi is not None and hi <= top:
            parts.append(_same_length(str(lo), str(hi)))
            break
        parts.append(_same_length(str(lo), str(top)))
        lo, length = top + 1, length + 1
        if hi is None:
            parts.append(f"[1-9] [0-9]{{{length - 1},}}")
            break
    return " | ".join(f"({p})" for p in parts)


def integer_range(lo: int | None, hi: int | None) -> str:
    if lo is None and hi is None:
        return '("-"? integral-part) space'
    parts = []
    if lo is None or lo < 0:
        neg_hi = None if lo is None else -lo  # magnitudes of the negative part
        neg_lo = 1 if hi is None or hi >= 0 else -hi
        parts.append(f'"-" ({natural_range(neg_lo, neg_hi)})')
    if hi is None or hi >= 0:
        parts.append(f"({natural_range(max(lo or 0, 0), hi)})")
    return "(" + " | ".join(parts) + ") space"


# --- the converter ------------------------------------------------------------------------


class SchemaConverter:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        key = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "r"
        if key in self.rules and self.rules[key] != body:
            i = 1
            while f"{key}{i}" in self.rules and self.rules[f"{key}{i}"] != body:
                i += 1
            key = f"{key}{i}"
        self.rules[key] = body
        return key

    def primitive(self, name: str) -> str:
        if name == "string":
            self.primitive("char")
        if name in ("number", "integer"):
            self.primitive("integral-part")
        self.rules.setdefault("space", SPACE)
        self.rules.setdefault(name, PRIMITIVES[name])
        return name

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ApiError(400, f"unsupported $ref in format: {ref}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ApiError(400, f"unresolvable $ref in format: {ref}")
        return node

    def visit(self, schema: Any, name: str) -> str:
        """The rule name (or inline GBNF) matching `schema`."""
        if schema is True or schema == {}:
            return self.any_value()
        if not isinstance(schema, dict):
            raise ApiError(400, f"invalid JSON schema in format at {name}")
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref not in self.refs:
                self.refs[ref] = self.add(ref.rsplit("/", 1)[-1], '""')  # reserve for recursion
                self.rules[self.refs[ref]] = self.body(self.resolve(ref), self.refs[ref])
            return self.refs[ref]
        return self.add(name, self.body(schema, name))

    def body(self, schema: dict[str, Any], name: str) -> str:
        if "const" in schema:
            self.rules.setdefault("space", SPACE)
            return json_literal(schema["const"])
        if "enum" in schema:
            self.rules.setdefault("space", SPACE)
            return " | ".join(json_literal(v) for v in schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return " | ".join(self.visit(s, f"{name}-{i}") for i, s in enumerate(schema[key]))
        if "allOf" in schema:
            merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            for part in schema["allOf"]:
                part = self.resolve(part["$ref"]) if "$ref" in part else part
                merged["properties"].update(part.get("properties", {}))
                merged["required"] += part.get("required", [])
            return self.body(merged, name)
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.visit({**schema, "type": k}, f"{name}-{k}") for k in kind)
        if kind is None and "properties" in schema:
            kind = "object"
        if kind == "object":
            return self.object(schema, name)
        if kind == "array":
            return self.array(schema, name)
        if kind == "string":
            return self.string(schema)
        if kind == "integer":
            self.primitive("integral-part")
            self.rules.setdefault("space", SPACE)
            return integer_range(_bound(schema, "minimum", 1), _bound(schema, "maximum", -1))
        if kind in ("number", "boolean", "null"):
            return self.primitive(kind)
        return self.any_value()

    def string(self, schema: dict[str, Any]) -> str:
        fmt = schema.get("format")
        if fmt in FORMATS:
            self.rules.setdefault("space", SPACE)
            return FORMATS[fmt]
        self.primitive("string")
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        if lo == 0 and hi is None:
            return "string"
        return f'"\\"" {repeat("char", lo, None if hi is None else int(hi))} "\\"" space'

    def array(self, schema: dict[str, Any], name: str) -> str:
        self.rules.setdefault("space", SPACE)
        if "prefixItems" in schema:
            items = [self.visit(s, f"{name}-{i}") for i, s in enumerate(schema["prefixItems"])]
            return '"[" space ' + ' "," space '.join(items) + ' "]" space'
        item = self.visit(schema.get("items", True), f"{name}-item")
        lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
        hi = None if hi is None else int(hi)
        if hi is not None and hi > MAX_ITEMS_UNROLLED:
            hi = None
        return f'"[" space {repeat(item, lo, hi, sep=chr(34) + "," + chr(34) + " space")} "]" space'

    def object(self, schema: dict[str, Any], name: str) -> str:
        self.rules.setdefault("space", SPACE)
        props: dict[str, Any] = schema.get("properties", {})
        required = [k for k in props if k in set(schema.get("required", []))]
        optional = [k for k in props if k not in required]
        kv = {}
        for k, v in props.items():
            value = self.visit(v, f"{name}-{k}")
            kv[k] = self.add(f"{name}-{k}-kv", f'{json_literal(k)} ":" space {value}')
        extra = schema.get("additionalProperties", False)
        if extra is not False and not props:
            value = self.visit(extra, f"{name}-value")
            self.primitive("string")
            pair = self.add(f"{name}-pair", f'string ":" space {value}')
            return f'"{{" space ({pair} ("," space {pair})*)? "}}" space'
        parts = [kv[k] for k in required]
        body = ' "," space '.join(parts)
        if optional:
            if parts:
                body += " " + " ".join(f'("," space {kv[k]})?' for k in optional)
            else:
                chain = kv[optional[-1]]
                for k in reversed(optional[:-1]):
                    rest = self.add(f"{name}-after-{k}", chain)
                    chain = f'{kv[k]} ("," space {rest})? | {rest}'
                body = f"({chain})?"
        return f'"{{" space {body} "}}" space'

    def any_value(self) -> str:
        for p in ("string", "number", "boolean", "null"):
            self.primitive(p)
        self.rules["value"] = "object | array | string | number | boolean | null"
        pair = 'string ":" space value'
        self.rules["object"] = f'"{{" space ({pair} ("," space {pair})*)? "}}" space'
        self.rules["array"] = '"[" space (value ("," space value)*)? "]" space'
        return "value"

    def grammar(self) -> str:
        root = self.body(self.root, "root")
        self.rules["root"] = root
        return "\n".join(f"{k} ::= {v}" for k, v in sorted(self.rules.items())) + "\n"


def _bound(schema: dict[str, Any], key: str, step: int) -> int | None:
    import math

    if key in schema:
        return int(math.ceil(schema[key]) if step > 0 else math.floor(schema[key]))
    exclusive = schema.get("exclusiveMinimum" if step > 0 else "exclusiveMaximum")
    if isinstance(exclusive, int | float) and not isinstance(exclusive, bool):
        return int(math.floor(exclusive) + 1 if step > 0 else math.ceil(exclusive) - 1)
    return None


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """The GBNF grammar (root rule `root`) accepting exactly the JSON `schema` describes."""
    return SchemaConverter(schema).grammar()
