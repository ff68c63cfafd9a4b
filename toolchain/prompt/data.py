"""The values templates see: Ollama's template-facing types, as declared Go structs.

Request JSON (the /api/chat message and tool objects) is converted into these once per
render. Field names, JSON tags, String() methods and type names follow the reference
(spec §2.3), so `{{ .Tools }}`, `{{ json . }}`, `{{ $p.Type }}` print what Ollama prints.
"""

from __future__ import annotations

import base64
import functools
import json
import marshal as marshal_value
from typing import Any, ClassVar

from toolchain.errors import MfcError
from toolchain.gojson import GoStruct as JSONStruct
from toolchain.gojson import RawJSON, marshal
from toolchain.gotemplate import GoBytes, GoMap, GoSlice, GoStruct
from toolchain.gotemplate.gofmt import value_string
from toolchain.gotemplate.values import Method, json_fields


class RequestError(MfcError):
    """The request JSON does not have the shape /api/chat or /api/generate accept."""


def _json_string(v: Any) -> str:
    return marshal(v)


class PropertyType(GoSlice):
    """api.PropertyType: a JSON string or array of strings; prints as its single type."""

    go_type = "api.PropertyType"
    go_methods: ClassVar[dict[str, Method]] = {"String": lambda self: self.go_string()}

    def go_string(self) -> str:
        if not self:
            return ""
        if len(self) == 1:
            return str(self[0])
        return value_string(list(self))

    def go_json_value(self) -> Any:
        return self[0] if len(self) == 1 else list(self)


def _ts_type(t: str) -> str:
    return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
            "array": "any[]", "object": "Record<string, any>", "null": "null"}.get(t, "any")  # fmt: skip  # noqa: E501


class ToolPropertiesMap(GoStruct):
    """*api.ToolPropertiesMap: keeps its keys' order in JSON."""

    __slots__ = ("items",)
    go_type = "api.ToolPropertiesMap"
    go_pointer = True

    def __init__(self, items: dict[str, ToolProperty] | None) -> None:
        self.items = items  # None: a nil pointer (no `properties` in the request)

    def go_is_nil(self) -> bool:
        return self.items is None

    def go_json_value(self) -> Any:
        return None if self.items is None else JSONStruct(self.items)


class ToolProperty(GoStruct):
    """api.ToolProperty (a value type: a struct, always truthy)."""

    __slots__ = ("AnyOf", "Description", "Enum", "Items", "Properties", "Required", "Type")
    go_type = "api.ToolProperty"
    go_fields = ("AnyOf", "Type", "Items", "Description", "Enum", "Properties", "Required")
    go_json_tags = (("AnyOf", "anyOf", True), ("Type", "type", True), ("Items", "items", True),
               ("Description", "description", True), ("Enum", "enum", True),
               ("Properties", "properties", True), ("Required", "required", True))  # fmt: skip
    go_methods: ClassVar[dict[str, Method]] = {
        "ToTypeScriptType": lambda self: self.to_typescript_type()
    }

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise RequestError(f"tool property must be an object, got {type(raw).__name__}")
        any_of = raw.get("anyOf")
        self.AnyOf = _slice("[]api.ToolProperty", [ToolProperty(p) for p in any_of or []], any_of)
        t = raw.get("type")
        types = [t] if isinstance(t, str) else list(t) if isinstance(t, list) else []
        self.Type = PropertyType(types)
        self.Type.is_nil = t is None
        self.Items = as_go_json(raw.get("items"))
        self.Description = str(raw.get("description") or "")
        enum = raw.get("enum")
        self.Enum = _slice("[]interface {}", as_go_json(list(enum or [])), enum)
        props = raw.get("properties")
        self.Properties = ToolPropertiesMap(
            {k: ToolProperty(v) for k, v in props.items()} if isinstance(props, dict) else None
        )
        req = raw.get("required")
        self.Required = _slice("[]string", [str(r) for r in req or []], req)

    def to_typescript_type(self) -> str:
        if self.AnyOf:
            return " | ".join(p.to_typescript_type() for p in self.AnyOf)
        if not self.Type:
            return "any"
        return " | ".join(_ts_type(t) for t in self.Type)


_SLICE_TYPES: dict[str, type[GoSlice]] = {}


def _slice(go_type: str, items: list[Any], raw: Any) -> GoSlice:
    """A typed slice; nil when the request omitted it (`raw is None`)."""
    cls = _SLICE_TYPES.get(go_type)
    if cls is None:
        cls = _SLICE_TYPES[go_type] = type("TypedSlice", (GoSlice,), {"go_type": go_type})
    s = cls(items)
    if raw is None:  # (not set otherwise: the class default, and no instance dict to make)
        s.is_nil = True
    return s


def as_go_json(v: Any) -> Any:
    """A value as Go's encoding/json decodes it into `any`: every number a float64."""
    if isinstance(v, bool) or v is None or isinstance(v, (str, float)):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, list):
        return [as_go_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): as_go_json(x) for k, x in v.items()}
    return v


class TemplateProperties(GoMap):
    go_type = "template.templateProperties"
    elem_iface = False
    go_methods: ClassVar[dict[str, Method]] = {"String": lambda self: self.go_string()}

    def zero(self) -> Any:
        return ToolProperty({})

    def go_string(self) -> str:
        return "{}" if self.is_nil else _json_string(self)


class TemplateArgs(GoMap):
    go_type = "template.templateArgs"
    go_methods: ClassVar[dict[str, Method]] = {"String": lambda self: self.go_string()}

    def go_string(self) -> str:
        return "{}" if self.is_nil else _json_string(self)


class TemplateToolFunctionParameters(GoStruct):
    Type: str
    Defs: Any
    Items: Any
    Required: GoSlice
    Properties: TemplateProperties
    __slots__ = ("Defs", "Items", "Properties", "Required", "Type")
    go_type = "template.templateToolFunctionParameters"
    go_fields = ("Type", "Defs", "Items", "Required", "Properties")
    go_json_tags = (("Type", "type", False), ("Defs", "$defs", True), ("Items", "items", True),
               ("Required", "required", True), ("Properties", "properties", False))  # fmt: skip


class TemplateToolFunction(GoStruct):
    Name: str
    Description: str
    Parameters: TemplateToolFunctionParameters
    __slots__ = ("Description", "Name", "Parameters")
    go_type = "template.templateToolFunction"
    go_fields = ("Name", "Description", "Parameters")
    go_json_tags = (("Name", "name", False), ("Description", "description", False),
               ("Parameters", "parameters", False))  # fmt: skip


class TemplateTool(GoStruct):
    Type: str
    Items: Any
    Function: TemplateToolFunction
    json_cache: RawJSON
    __slots__ = ("Function", "Items", "Type", "json_cache")
    go_type = "template.templateTool"
    go_fields = ("Type", "Items", "Function")
    go_json_tags = (("Type", "type", False), ("Items", "items", True),
                    ("Function", "function", False))  # fmt: skip
    go_methods: ClassVar[dict[str, Method]] = {"String": lambda self: self.go_string()}

    def go_string(self) -> str:
        return _json_string(self)

    def go_json(self) -> RawJSON:
        """Its JSON, computed once: templates cannot change the values they are given."""
        try:
            return self.json_cache
        except AttributeError:
            self.json_cache = RawJSON(marshal(json_fields(self)))
            return self.json_cache


class TemplateTools(GoSlice):
    go_type = "template.templateTools"
    go_methods: ClassVar[dict[str, Method]] = {"String": lambda self: self.go_string()}

    def go_string(self) -> str:
        return _json_string(self)


class TemplateToolCallFunction(GoStruct):
    Index: int
    Name: str
    Arguments: TemplateArgs
    __slots__ = ("Arguments", "Index", "Name")
    go_type = "template.templateToolCallFunction"
    go_fields = ("Index", "Name", "Arguments")


class TemplateToolCall(GoStruct):
    ID: str
    Function: TemplateToolCallFunction
    __slots__ = ("Function", "ID")
    go_type = "template.templateToolCall"
    go_fields = ("ID", "Function")


class TemplateMessage(GoStruct):
    """*template.templateMessage: what `range .Messages` yields."""

    Role: str
    Content: str
    Thinking: str
    Images: GoSlice
    ToolCalls: GoSlice
    ToolName: str
    ToolCallID: str

    __slots__ = ("Content", "Images", "Role", "Thinking", "ToolCallID", "ToolCalls", "ToolName")
    go_type = "template.templateMessage"
    go_pointer = True
    go_fields = ("Role", "Content", "Thinking", "Images", "ToolCalls", "ToolName", "ToolCallID")


def tool_from_json(raw: Any) -> TemplateTool:
    """One entry of the request's `tools`, as the template sees it."""
    if not isinstance(raw, dict):
        raise RequestError("each tool must be a JSON object")
    fn = raw.get("function") or {}
    params = fn.get("parameters") or {}
    if not isinstance(fn, dict) or not isinstance(params, dict):
        raise RequestError("tool.function and tool.function.parameters must be objects")
    props = params.get("properties")
    tprops = TemplateProperties({k: ToolProperty(v) for k, v in (props or {}).items()})
    tprops.is_nil = props is None
    p = TemplateToolFunctionParameters()
    p.Type = str(params.get("type") or "")
    p.Defs = as_go_json(params.get("$defs"))
    p.Items = as_go_json(params.get("items"))
    req = params.get("required")
    p.Required = _slice("[]string", [str(r) for r in req or []], req)
    p.Properties = tprops
    f = TemplateToolFunction()
    f.Name = str(fn.get("name") or "")
    f.Description = str(fn.get("description") or "")
    f.Parameters = p
    t = TemplateTool()
    t.Type = str(raw.get("type") or "")
    t.Items = as_go_json(raw.get("items"))
    t.Function = f
    return t


def tools_from_json(raw: Any) -> TemplateTools:
    """The request's `tools` as the template sees them (converted once per distinct list)."""
    if raw is not None and not isinstance(raw, list):
        raise RequestError("`tools` must be a list")
    if raw is None:
        tools = TemplateTools()
        tools.is_nil = True
        return tools
    try:
        # an exact key (bool, int, float and str stay distinct), far cheaper than JSON text
        value_key: bytes | None = marshal_value.dumps(raw, 4)
    except ValueError:  # not plain data: only the JSON text can tell
        value_key = None
    found = _TOOLS_BY_VALUE.get(value_key) if value_key is not None else None
    if found is not None:
        return found
    try:
        key = json.dumps(raw, sort_keys=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise RequestError("`tools` must be JSON data") from None
    tools = _tools_cached(key)
    if value_key is not None:
        if len(_TOOLS_BY_VALUE) >= 64:
            _TOOLS_BY_VALUE.clear()
        _TOOLS_BY_VALUE[value_key] = tools
    return tools


_TOOLS_BY_VALUE: dict[bytes, TemplateTools] = {}


@functools.lru_cache(maxsize=64)
def _tools_cached(key: str) -> TemplateTools:
    return TemplateTools(tool_from_json(t) for t in json.loads(key))


def message_from_json(m: Any) -> TemplateMessage:
    """One /api/chat message (role lower-cased, as the reference's decoder does)."""
    if not isinstance(m, dict):
        raise RequestError("each message must be a JSON object")
    msg = TemplateMessage()
    msg.Role = str(m.get("role") or "").lower()
    msg.Content = str(m.get("content") or "")
    msg.Thinking = str(m.get("thinking") or "")
    images = m.get("images")
    msg.Images = _slice("[]api.ImageData", [_image(i) for i in images or []], images or None)
    calls = [_tool_call(c) for c in m.get("tool_calls") or []]
    msg.ToolCalls = _slice("[]template.templateToolCall", calls, calls or None)
    msg.ToolName = str(m.get("tool_name") or "")
    msg.ToolCallID = str(m.get("tool_call_id") or "")
    return msg


def _image(raw: Any) -> GoBytes:
    try:
        return GoBytes(base64.b64decode(str(raw), validate=False))
    except ValueError as exc:
        raise RequestError(f"image is not base64: {exc}") from None


def _tool_call(raw: Any) -> TemplateToolCall:
    if not isinstance(raw, dict):
        raise RequestError("each tool call must be a JSON object")
    fn = raw.get("function") or {}
    f = TemplateToolCallFunction()
    f.Index = int(fn.get("index") or 0)
    f.Name = str(fn.get("name") or "")
    args = fn.get("arguments")
    if args is not None and not isinstance(args, dict):
        raise RequestError("tool_calls[].function.arguments must be an object")
    f.Arguments = TemplateArgs(as_go_json(args or {}))
    f.Arguments.is_nil = args is None
    c = TemplateToolCall()
    c.ID = str(raw.get("id") or "")
    c.Function = f
    return c
