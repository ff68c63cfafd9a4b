"""Ollama's template function map: json, currentDate, yesterdayDate, toTypeScriptType."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from toolchain.gojson import JSONError, marshal
from toolchain.gotemplate.builtins import GoFunc
from toolchain.gotemplate.values import GoStruct


def json_func(v: Any) -> str:
    """`json`: Go's json.Marshal, with the error dropped (NaN/Inf give "")."""
    try:
        return marshal(v)
    except (JSONError, RecursionError):
        return ""


def current_date(*_: str) -> str:
    return _dt.date.today().strftime("%Y-%m-%d")


def yesterday_date(*_: str) -> str:
    return (_dt.date.today() - _dt.timedelta(days=1)).strftime("%Y-%m-%d")


def to_typescript_type(v: Any) -> str:
    """`toTypeScriptType`: the method of api.ToolProperty (value or pointer), else "any"."""
    if isinstance(v, GoStruct) and v.go_type == "api.ToolProperty":
        return str(v.go_methods["ToTypeScriptType"](v))
    return "any"


OLLAMA_FUNCS: dict[str, GoFunc] = {
    "json": GoFunc(json_func, ("any",), never_nil=True),
    "currentDate": GoFunc(current_date, (), "string", never_nil=True),
    "yesterdayDate": GoFunc(yesterday_date, (), "string", never_nil=True),
    "toTypeScriptType": GoFunc(to_typescript_type, ("any",), never_nil=True),
}
