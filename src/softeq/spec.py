"""One softening setting as a value: group, filter, softness and positional softness.

The one place that parses, validates and prints a setting (docs/conventions.md §2): the run-path
segment ``group~C4/filter~shrink/b~0.5_pos~0.5``, the JSON object the stages receive, and the
label of logs and tables.  Softness values are kept exactly: the path segment is the shortest
decimal that reads back as the same float, so two different values never share a path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from softeq.filters import METHODS, RPP, check_softness, resolve_method
from softeq.groups import parse_group

__all__ = [
    "PATH_TEMPLATE",
    "WILDCARD_PATTERNS",
    "Softening",
    "format_softness",
]

_SOFTNESS = r"0|1|0\.[0-9]+"
WILDCARD_PATTERNS = {
    "group": r"C[1-9][0-9]*|D[1-9][0-9]*|flip|SO2|O[1-9][0-9]*",
    "filter": "|".join(re.escape(name) for name in METHODS),
    "softness": _SOFTNESS,
    "softness_pos": _SOFTNESS,
}
"""Regular expressions of the path segment's wildcards (the workflow constrains them)."""

PATH_TEMPLATE = "group~{group}/filter~{filter}/b~{softness}_pos~{softness_pos}"
"""The path segment of a setting, with its wildcards in Snakemake's ``{name}`` form."""

_PATH_RE = re.compile(
    r"group~(?P<group>[^/]+)/filter~(?P<filter>[^/]+)/b~(?P<softness>[^_/]+)_pos~(?P<pos>[^/]+)"
)


def format_softness(value: float) -> str:
    """A softness as it appears in paths: the shortest decimal that reads back exactly
    (``0``, ``0.25``, ``1``, ``0.1234567``)."""
    text = repr(float(value))
    text = text.removesuffix(".0")
    if not re.fullmatch(_SOFTNESS, text):
        raise ValueError(
            f"softness {value!r} has no plain decimal form in [0, 1] (write it as 0.xxx)"
        )
    return text


@dataclass(frozen=True)
class Softening:
    """How a model is softened: what ``softeq.soften`` needs, and nothing a path cannot name.

    ``softness_pos`` is the positional grid's softness (``None`` on input means: the same as
    ``softness``).  ``operator`` (C_n grid action) and ``features`` (``image`` or ``pairs``) are
    settings of the model kind, carried in the JSON form but not in the path.
    """

    group: str
    softness: float
    softness_pos: float | None = None
    filter: str = "shrink"
    operator: str | None = None
    features: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "group", parse_group(self.group).name)
        set_(self, "filter", resolve_method(self.filter))
        set_(self, "softness", check_softness(self.softness, "softness"))
        pos = self.softness if self.softness_pos is None else self.softness_pos
        set_(self, "softness_pos", check_softness(pos, "softness_pos"))
        for value in (self.softness, self.softness_pos):
            format_softness(value)
        if self.filter == RPP:
            self._check_rpp()
        if self.features not in (None, "image", "pairs"):
            raise ValueError(f"features must be 'image' or 'pairs', got {self.features!r}")

    def _check_rpp(self) -> None:
        """Residual pathway priors act on conv kernels only (softeq.rpp): no positional
        softness of its own, no pair features."""
        if self.softness_pos != self.softness:
            raise ValueError(
                f"filter {RPP!r} has no positional softness: softness_pos must equal softness "
                f"({self.softness_pos} != {self.softness})"
            )
        if parse_group(self.group).kind == "SO2" or self.features == "pairs":
            raise ValueError(f"filter {RPP!r} softens conv kernels; pair features take a filter")

    # ---- the path segment ------------------------------------------------------------------

    @property
    def path(self) -> str:
        """``group~C4/filter~shrink/b~0.5_pos~0.5``."""
        return PATH_TEMPLATE.format(
            group=self.group,
            filter=self.filter,
            softness=format_softness(self.softness),
            softness_pos=format_softness(self.softness_pos),
        )

    @classmethod
    def from_path(cls, segment: str) -> Softening:
        """Parse a path segment; a malformed segment or an unknown name raises, naming it."""
        match = _PATH_RE.fullmatch(segment.strip("/"))
        if match is None:
            raise ValueError(
                f"malformed softening path segment {segment!r}: expected "
                "group~<group>/filter~<filter>/b~<softness>_pos~<softness>"
            )
        values = match.groupdict()
        for key, pattern in (("softness", _SOFTNESS), ("pos", _SOFTNESS)):
            if not re.fullmatch(pattern, values[key]):
                raise ValueError(f"softening path segment {segment!r}: bad {key} {values[key]!r}")
        try:
            return cls(
                values["group"],
                float(values["softness"]),
                float(values["pos"]),
                values["filter"],
            )
        except ValueError as error:
            raise ValueError(f"softening path segment {segment!r}: {error}") from error

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> Softening:
        """The setting named by a Snakemake job's wildcards (see :data:`PATH_TEMPLATE`)."""
        return cls(
            wildcards.group,
            float(wildcards.softness),
            float(wildcards.softness_pos),
            wildcards.filter,
        )

    # ---- the JSON form ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``operator`` and ``features`` only when set."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "softening") -> Softening:
        """Build from a JSON object; unknown or missing keys raise, naming ``where``."""
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected an object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
        missing = [key for key in ("group", "softness") if key not in values]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from error

    @classmethod
    def from_json(cls, text: str, where: str = "softening") -> Softening:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error})") from error
        return cls.from_dict(values, where)

    # ---- for people ------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """``C4 shrink b=0.5`` (and ``pos=0.8`` where the grid's softness differs)."""
        text = f"{self.group} {self.filter} b={format_softness(self.softness)}"
        if self.softness_pos != self.softness:
            text += f" pos={format_softness(self.softness_pos)}"
        return text

    def soften_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`softeq.soften`.

        A positional softness equal to the softness is passed as ``None`` (the default), which
        models without a positional grid accept; any other value on such a model raises there.
        """
        return {
            "group": self.group,
            "softness": self.softness,
            "softness_pos": None if self.softness_pos == self.softness else self.softness_pos,
            "filter": self.filter,
            "operator": self.operator,
            "features": self.features,
        }

    def with_features(self, features: str) -> Softening:
        return replace(self, features=features)
