"""Typed config values: build a dataclass from nested YAML data, checking every key and value at load time.

A schema is a dataclass whose fields carry type hints (``int``, ``float``, ``bool``, ``str``, ``Literal``,
``X | None``, ``list[X]``, ``dict[str, X]``, nested dataclasses) and optional range checks in their metadata
(``field(default=..., metadata=check(gt=0))``). ``from_data`` rejects unknown keys with the closest valid key
suggested, converts nothing silently (``"ten"`` is not an int, ``true`` is not a number), and names the key
and the file it came from in every ``ConfigError``. Components (a core, a readout, ...) are checked against
the keyword parameters of the class that builds them (``check_options``), so their defaults live in one
place, the constructor.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

from neurofit.errors import ConfigError

#: Where each value came from: key path -> file or ``--set`` override, for error messages.
Sources = Mapping[tuple[str, ...], str]


def check(gt: float | None = None, ge: float | None = None, lt: float | None = None,
          le: float | None = None) -> dict[str, Any]:
    """Field metadata that bounds a number: ``field(default=1, metadata=check(gt=0))``."""
    return {"bounds": {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}}


def source_of(path: tuple[str, ...], sources: Sources, default: str) -> str:
    """The file or override that set ``path`` (or its closest parent), else ``default``."""
    for end in range(len(path), 0, -1):
        if path[:end] in sources:
            return sources[path[:end]]
    return default


class Context:
    """The file a config came from and where each of its values was set, for error messages."""

    def __init__(self, origin: str, sources: Sources | None) -> None:
        self.origin, self.sources = origin, dict(sources or {})

    def fail(self, path: tuple[str, ...], problem: str) -> ConfigError:
        return ConfigError(f"{source_of(path, self.sources, self.origin)}: {'.'.join(path)}: {problem}")


def suggest(key: str, valid: list[str]) -> str:
    """``"; did you mean X?"`` for the closest valid key, or the list of valid keys."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else f" (valid: {', '.join(sorted(valid))})"


def from_data(cls: type, data: Any, origin: str, sources: Sources | None = None,
              path: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass ``cls`` from a mapping (missing keys take the field defaults)."""
    return _dataclass(cls, data, Context(origin, sources), path)


def convert(hint: Any, value: Any, origin: str, path: tuple[str, ...], sources: Sources | None = None) -> Any:
    """``value`` checked (and, for nested schemas, built) against the type ``hint``."""
    return _value(hint, value, Context(origin, sources), path)


def _dataclass(cls: type, data: Any, ctx: Context, path: tuple[str, ...]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ctx.fail(path, f"must be a mapping of keys, got {_shown(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ctx.fail(path + (str(key),), f"unknown key{suggest(str(key), list(fields))}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _value(hints[key], value, ctx, path + (key,))
        _bounds(fields[key], kwargs[key], ctx, path + (key,))
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ctx.fail(path or ("config",), str(err)) from None


def _bounds(f: dataclasses.Field, value: Any, ctx: Context, path: tuple[str, ...]) -> None:
    bounds = f.metadata.get("bounds", {})
    if value is None or not bounds:
        return
    values = value if isinstance(value, list) else [value]
    tests = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="), "lt": (lambda v, b: v < b, "<"),
             "le": (lambda v, b: v <= b, "<=")}
    for v in values:
        for kind, bound in bounds.items():
            ok, sign = tests[kind]
            if not ok(v, bound):
                raise ctx.fail(path, f"must be {sign} {bound:g}, got {v!r}")


def _value(hint: Any, value: Any, ctx: Context, path: tuple[str, ...]) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ctx.fail(path, f"must be {_describe(hint)}, got null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _value(option, value, ctx, path)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ctx.fail(path, f"must be {_describe(hint)}, got {_shown(value)}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        raise ctx.fail(path, f"must be one of {list(choices)}, got {_shown(value)}{_close(value, choices)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.fail(path, f"must be a list, got {_shown(value)}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_value(item, v, ctx, path + (str(i),)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ctx.fail(path, f"must be a mapping, got {_shown(value)}")
        _, item = typing.get_args(hint) or (str, Any)
        return {str(k): _value(item, v, ctx, path + (str(k),)) for k, v in value.items()}
    if hasattr(hint, "parse"):  # a schema type that checks itself (a model component)
        return hint.parse(value, ctx, path)
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, value, ctx, path)
    return _scalar(hint, value, ctx, path)


def _scalar(hint: Any, value: Any, ctx: Context, path: tuple[str, ...]) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ctx.fail(path, f"must be {_describe(hint)}, got {_shown(value)}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return (text if len(text) < 60 else text[:57] + "...") + f" ({type(value).__name__})"


def _close(value: Any, choices: tuple) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def to_data(obj: Any) -> Any:
    """Plain YAML-ready data (dicts, lists, scalars) from a schema instance; components flatten to
    ``{name: ..., **options}`` through their own ``to_data``."""
    if hasattr(obj, "to_data") and not isinstance(obj, type):
        return obj.to_data()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def parameters(factory: Callable, structural: frozenset[str]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``factory`` (a class or function) that a config may set: every parameter
    with a default, except the ``structural`` ones that the model fills in from the data."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters
    return {n: p for n, p in params.items() if n != "self" and n not in structural
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty}


def check_options(factory: Callable, options: Mapping[str, Any], ctx: Context, path: tuple[str, ...],
                  structural: frozenset[str]) -> dict[str, Any]:
    """``options`` for ``factory`` checked against its keyword parameters (names, and types where annotated),
    completed with the defaults of the ones not given: the resolved options of a component."""
    params = parameters(factory, structural)
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # annotations naming types only imported for checking
        hints = {}
    for key in options:
        if key not in params:
            raise ctx.fail(path + (str(key),), f"unknown option{suggest(str(key), list(params))}")
    return {name: _value(hints.get(name, Any), options[name], ctx, path + (name,)) if name in options
            else param.default for name, param in params.items()}
