"""Typed requests (runtime.requests): each route's class is its one field list.

The Go struct a body is bound against is derived from the class; these tests hold every
class in runtime.schemas to it: each field has a Go type and a JSON key, a body setting
every field reaches every attribute, and defaults follow Go (a non-pointer field's default
is its zero value; only pointer-like fields are Optional).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from runtime import schemas
from runtime.errors import ApiError
from runtime.jsonbody import GoType, decode
from runtime.requests import bind, json_key, shape_of

REQUESTS = [
    cls
    for cls in vars(schemas).values()
    if isinstance(cls, type)
    and dataclasses.is_dataclass(cls)
    and cls.__module__ == "runtime.schemas"
]
CUSTOM_SAMPLES = {"*api.Duration": "5m", "*api.ThinkValue": "high"}
ZERO = {"string": "", "bool": False, "int": 0, "float": 0.0}


def sample(t: GoType) -> Any:
    """A JSON value of Go type `t` that is not its zero value."""
    if t.kind == "custom":
        return CUSTOM_SAMPLES[t.name]
    if t.kind in ("slice", "map"):
        assert t.elem is not None
        return [sample(t.elem)] if t.kind == "slice" else {"k": sample(t.elem)}
    if t.kind == "struct":
        return {name: sample(sub) for name, sub in t.fields.items()}
    return {"string": "x", "bool": True, "int": 3, "float": 1.5, "any": {"a": [1]}}[t.kind]


def test_every_route_has_a_request_class() -> None:
    names = {cls.__name__ for cls in REQUESTS}
    assert {"GenerateRequest", "ChatRequest", "EmbedRequest", "EmbeddingRequest"} <= names


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda c: c.__name__)
def test_shape_is_the_class_field_list(cls: type) -> None:
    fields = dataclasses.fields(cls)
    shape = shape_of(cls)
    assert shape.kind == "struct"
    assert list(shape.fields) == [json_key(f) for f in fields]
    for f in fields:
        assert isinstance(f.metadata.get("go"), GoType), f.name
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen and hasattr(cls, "__slots__")


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda c: c.__name__)
def test_a_full_body_reaches_every_attribute(cls: type) -> None:
    shape = shape_of(cls)
    body = {key: sample(t) for key, t in shape.fields.items()}
    decoded = decode(json.dumps(body).encode(), shape)
    assert set(decoded) == set(shape.fields)
    req: Any = bind(cls, decoded)
    for f in dataclasses.fields(cls):
        assert getattr(req, f.name) == decoded[json_key(f)], f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(req, dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda c: c.__name__)
def test_defaults_follow_go(cls: type) -> None:
    empty: Any = bind(cls, decode(b"{}", shape_of(cls)))
    nulls = {key: None for key in shape_of(cls).fields}
    assert bind(cls, decode(json.dumps(nulls).encode(), shape_of(cls))) == empty
    for f in dataclasses.fields(cls):
        t: GoType = f.metadata["go"]
        optional = "None" in str(f.type) or str(f.type) == "Any"
        if f.default is None:
            assert optional, f"{f.name} defaults to None but is typed {f.type}"
        else:
            # a Go non-pointer field: absent means its zero value
            assert not optional and f.default == ZERO[t.kind], f.name


def test_pointer_fields_tell_absent_from_false() -> None:
    absent = bind(schemas.GenerateRequest, decode(b"{}", schemas.GENERATE))
    off = bind(schemas.GenerateRequest, decode(b'{"stream":false}', schemas.GENERATE))
    assert (absent.stream, off.stream, absent.raw) == (None, False, False)
    chat = bind(schemas.ChatRequest, decode(b'{"_DEBUG_render_only":true}', schemas.CHAT))
    assert chat.debug_render_only is True


def test_type_errors_name_the_go_struct() -> None:
    with pytest.raises(ApiError) as err:
        decode(b'{"dimensions":"4"}', schemas.EMBED)
    assert err.value.message == (
        "json: cannot unmarshal string into Go struct field EmbedRequest.dimensions of type int"
    )
