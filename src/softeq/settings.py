"""Settings dataclasses built from config dictionaries: unknown keys fail, naming the key."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["from_dict"]

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any], where: str, tuples: tuple[str, ...] = ()) -> T:
    """``cls(**values)`` after rejecting keys ``cls`` does not have; ``tuples`` names fields
    given as lists in configs and stored as tuples (hashable, immutable)."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    values = {k: tuple(v) if k in tuples else v for k, v in values.items()}
    return cls(**values)
