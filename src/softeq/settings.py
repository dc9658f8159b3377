"""Settings dataclasses built from config dictionaries: an unknown key, a value of the wrong type
or out of range fails with a ValueError that names the key."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["SettingError", "at_least", "check_types", "from_dict", "one_of", "positive"]

T = TypeVar("T")


class SettingError(ValueError):
    """A bad settings value; ``key`` names it (``from_dict`` prefixes where it came from)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def from_dict(cls: type[T], values: dict[str, Any], where: str, tuples: tuple[str, ...] = ()) -> T:
    """``cls(**values)`` after rejecting keys ``cls`` does not have; ``tuples`` names fields
    given as lists in configs and stored as tuples (hashable, immutable). A SettingError raised
    while building (types, ranges) is re-raised as ``<where>.<key>: ...``."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    values = {
        k: tuple(v) if k in tuples and isinstance(v, list | tuple) else v for k, v in values.items()
    }
    try:
        settings = cls(**values)
        check_types(settings)
    except SettingError as error:
        raise ValueError(f"{where}.{error.key}: {error.message}") from None
    return settings


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (int / float / str / bool, ``X | None``,
    ``Literal``, tuples); other annotations are not checked."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    return True


def check_types(settings: Any) -> None:
    """Raise SettingError for the first field whose value does not fit its annotation."""
    hints = typing.get_type_hints(type(settings))
    for field in fields(settings):
        value = getattr(settings, field.name)
        hint = hints[field.name]
        if not _matches(value, hint):
            expected = hint.__name__ if isinstance(hint, type) else str(hint)
            note = ""
            if isinstance(value, str) and _matches(1.0, hint):
                note = " (YAML reads 5e-4 as a string: write 5.0e-4)"
            raise SettingError(field.name, f"expected {expected}, got {value!r}{note}")


def at_least(settings: Any, key: str, bound: float) -> None:
    """``settings.<key> >= bound`` (None passes: an optional setting left unset)."""
    value = getattr(settings, key)
    if value is not None and (not isinstance(value, int | float) or value < bound):
        raise SettingError(key, f"must be >= {bound}, got {value!r}")


def positive(settings: Any, key: str) -> None:
    """``settings.<key> > 0`` (None passes)."""
    value = getattr(settings, key)
    if value is not None and (not isinstance(value, int | float) or not value > 0):
        raise SettingError(key, f"must be > 0, got {value!r}")


def one_of(settings: Any, key: str, choices: Iterable[Any]) -> None:
    """``settings.<key>`` is one of ``choices``."""
    choices = tuple(choices)
    value = getattr(settings, key)
    if value not in choices:
        raise SettingError(key, f"must be one of {list(choices)}, got {value!r}")
