"""The paper's reported numbers, read from the data file shipped beside this module.

``reported.csv`` holds one row per number: ``task, dataset, backbone, setting, metric, value,
source, note``. Values are in the paper tables' display units (accuracies and mIoU in percent,
KL errors x 1e-2, trajectories in metres per predicted step; docs/paper.md).
``source`` says where each number comes from: ``paper Table 1`` (checked against the paper) or
``secondary source`` (taken from third-party summaries of the paper's tables and not yet checked
against the PDF: quote those as "reported", never as verified). ``note`` is free text.
A number whose model the paper does not name has the backbone :data:`UNKNOWN_BACKBONE` (and says
so in its setting): the tables show it beside every run on its dataset.

Every reader goes through :func:`read_reported`, which rejects a malformed row with a
``ValueError`` naming the file and line.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "REPORTED_CSV",
    "SECONDARY",
    "UNKNOWN_BACKBONE",
    "ReportedNumber",
    "read_reported",
    "reported_numbers",
    "source_label",
]

PathLike = str | os.PathLike[str]

REPORTED_CSV = Path(__file__).with_name("reported.csv")
COLUMNS = ("task", "dataset", "backbone", "setting", "metric", "value", "source", "note")
SECONDARY = "secondary source"
UNKNOWN_BACKBONE = "unknown"  # the paper does not say which model a number is of
# Short forms in the tables' ``source`` column: "reported (s)" marks secondary-source numbers.
_SHORT = {SECONDARY: "s"}


@dataclass(frozen=True)
class ReportedNumber:
    """One number the paper reports, with where it comes from."""

    task: str
    dataset: str
    backbone: str
    setting: str
    metric: str
    value: float
    source: str
    note: str = ""


def _parse_row(path: Path, line: int, cells: list[str]) -> ReportedNumber:
    where = f"{path}:{line}"
    if len(cells) != len(COLUMNS):
        raise ValueError(f"{where}: expected {len(COLUMNS)} fields {COLUMNS}, got {len(cells)}")
    fields = dict(zip(COLUMNS, (c.strip() for c in cells), strict=True))
    empty = [c for c in COLUMNS if c not in ("value", "note") and not fields[c]]
    if empty:
        raise ValueError(f"{where}: empty field(s) {empty}")
    try:
        value = float(fields["value"])
    except ValueError:
        raise ValueError(f"{where}: value {fields['value']!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: value {fields['value']!r} is not a finite number")
    return ReportedNumber(**{**fields, "value": value})


def read_reported(path: PathLike | None = None) -> list[ReportedNumber]:
    """Every reported number of ``path`` (default: the shipped ``reported.csv``), in file order.

    Raises ``ValueError`` naming the file and line for a wrong header, a row with the wrong
    number of fields, an empty key field, a value that is not a finite number, or a number given
    twice (same task, dataset, backbone, setting and metric).
    """
    p = Path(path) if path is not None else REPORTED_CSV
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise ValueError(f"{p}:1: header must be {','.join(COLUMNS)}, got {header}")
        numbers, seen = [], {}
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # a blank line
            number = _parse_row(p, reader.line_num, cells)
            key = (number.task, number.dataset, number.backbone, number.setting, number.metric)
            if key in seen:
                raise ValueError(f"{p}:{reader.line_num}: {key} repeats line {seen[key]}")
            seen[key] = reader.line_num
            numbers.append(number)
    return numbers


Nested = dict[str, dict[tuple[str, str], dict[str, dict[str, float]]]]


def reported_numbers(path: PathLike | None = None) -> Nested:
    """task -> (dataset, backbone) -> setting -> metric -> value, in file order."""
    return _nest(read_reported(path)) if path is not None else _default()


@cache
def _default() -> Nested:
    return _nest(read_reported())


def _nest(numbers: Iterable[ReportedNumber]) -> Nested:
    out: Nested = {}
    for n in numbers:
        setting = out.setdefault(n.task, {}).setdefault((n.dataset, n.backbone), {})
        setting.setdefault(n.setting, {})[n.metric] = n.value
    return out


def source_label(sources: Iterable[str]) -> str:
    """The tables' ``source`` cell for numbers of these sources: ``reported (s)`` for secondary
    sources, ``reported (paper Table 1)`` for checked ones, several joined by ``; ``."""
    distinct = list(dict.fromkeys(sources))
    return f"reported ({'; '.join(_SHORT.get(s, s) for s in distinct)})"


def __getattr__(name: str) -> Any:
    """``REPORTED``: the shipped numbers as :func:`reported_numbers` nests them (read lazily)."""
    if name == "REPORTED":
        return _default()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
