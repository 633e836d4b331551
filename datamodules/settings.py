"""Typed settings from plain mappings (YAML, the command line): one checker for every
settings dataclass of the suite, the run specification's sections and each ranker's own.

``typed_settings(Cls, mapping, "where")`` builds ``Cls`` from ``mapping`` after checking each
value against its field's annotation: an unknown key, or a value of the wrong type, ends in
one line naming the setting (``where.key``). Numbers written ``1e-4``, which YAML reads as
text, become numbers; lists become the tuples a field declares; ``Literal`` fields take one of
their choices; nested settings dataclasses are built the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


def typed_settings(cls: type[T], values: Mapping | T | None, where: str) -> T:
    """``cls`` built from ``values`` (a mapping of some of its fields, an instance, or None
    for its defaults)."""
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where or 'settings'} must be a mapping of settings, not {values!r}")
    hints = field_types(cls)
    unknown = sorted(str(k) for k in set(values) - set(hints))
    if unknown:
        known = ", ".join(sorted(hints)) or "none"
        raise ValueError(f"{_at(where)}unknown setting(s) {', '.join(unknown)}; known: {known}")
    checked = {key: checked_value(v, hints[key], _key(where, key)) for key, v in values.items()}
    try:
        return cls(**checked)
    except (TypeError, ValueError) as error:  # a dataclass's own checks (ranges, choices)
        raise ValueError(_placed(str(error).strip().splitlines()[0], where)) from None


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _placed(message: str, where: str) -> str:
    """A dataclass's own message placed at ``where``: ``labeling.grade_cuts must ...`` from
    the section ``data.labels.labeling`` becomes ``data.labels.labeling.grade_cuts must ...``."""
    parent, _, last = where.rpartition(".")
    if last and message.startswith(f"{last}."):
        return f"{parent}.{message}" if parent else message
    return f"{_at(where)}{message}"


def as_mapping(settings: Any) -> dict:
    """A settings dataclass as plain data (tuples as lists), as records and W&B hold it."""
    return _plain(dataclasses.asdict(settings))


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Each init field of the dataclass ``cls`` and its resolved annotation."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    hints = typing.get_type_hints(cls)  # each base's annotations in its own module
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def checked_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the type ``hint`` declares, or a one-line ``ValueError``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return checked_value(value, option, where)
            except ValueError as error:
                errors.append(error)
        if len(options) == 1:
            raise errors[0]
        raise ValueError(f"{where} must be {' or '.join(_kind(o) for o in options)}, not {value!r}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) if not isinstance(a, str) else a for a in args)
        raise ValueError(f"{where} must be one of {choices}, not {value!r}")
    if dataclasses.is_dataclass(hint):
        return typed_settings(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} must be a list, e.g. [64, 32], not {value!r}")
        item = args[0] if args else Any
        items = [checked_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping, e.g. {{relevance: 1.0}}, not {value!r}")
        key_type, item = args if args else (Any, Any)
        return {
            checked_value(k, key_type, where): checked_value(v, item, _key(where, k))
            for k, v in value.items()
        }
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if hint in (int, float):
        return _number(value, hint, where)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be text, not {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"{where} must be a path, not {value!r}")
        return Path(value)
    raise TypeError(f"{where}: settings of type {hint!r} are not supported")


def _number(value: Any, kind: type, where: str) -> int | float:
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ValueError(f"{where} must be {_kind(kind)}, not {value!r}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{where} must be a whole number, not {value!r}")
        return int(number)
    return float(number)


def _kind(hint: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if typing.get_origin(hint) in (tuple, list):
        return "a list"
    if typing.get_origin(hint) in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
