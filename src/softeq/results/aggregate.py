"""Evaluation JSONs -> CSV + Markdown tables (docs/conventions.md §1; bounds: docs/method.md §6).

Every evaluation writes one JSON per (task, dataset, backbone, group, filter, softness,
softness_pos, seed). This module reads them once and writes flat tables that everything downstream
(figures, report) reads instead, so figures never depend on the JSON layout or on re-evaluation:

- runs:    one row per JSON, identity columns + every numeric metric;
- summary: mean and sample std (ddof=1) over seeds per configuration, with ``n_seeds``;
- bounds:  one row per run x soft layer (measured residual against the guarantee);
- angles:  one row per run x angle of the rotation sweep.

Metric names are not fixed here: every numeric key of ``metrics`` (and of each ``angle_sweep``
entry) becomes a column, so new tasks need no change to this file.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from softeq.io import atomic_write_text

__all__ = [
    "CONFIG",
    "IDENTITY",
    "aggregate",
    "angles_table",
    "bounds_table",
    "load_runs",
    "markdown_table",
    "read_table",
    "summarise",
    "write_table",
]

PathLike = str | os.PathLike[str]

IDENTITY: tuple[str, ...] = (
    "task",
    "dataset",
    "backbone",
    "group",
    "filter",
    "softness",
    "softness_pos",
    "seed",
)
# What a summary groups by: a configuration is a run without its seed.
CONFIG: tuple[str, ...] = IDENTITY[:-1]
_TEXT_KEYS = ("task", "dataset", "backbone", "group", "filter")
# Text columns of any table this module writes; read back as strings, never as NaN ("NA" is a name).
_TEXT_COLUMNS = frozenset((*_TEXT_KEYS, "layer", "kind", "layer_group", "layer_filter"))
# Bound-record keys renamed so they cannot clash with the run's identity columns.
_BOUND_RENAME = {"name": "layer", "group": "layer_group", "filter": "layer_filter"}
_BOUND_REQUIRED = ("name", "b", "measured", "bound")
_BOUND_COLUMNS = (
    "layer",
    "kind",
    "layer_group",
    "operator_size",
    "layer_filter",
    "b",
    "b_eff",
    "sigma_max",
    "measured",
    "bound",
)
# Task and dataset become parts of file names: keep them to safe characters.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

Record = tuple[Path, dict[str, Any]]


# ---------------------------------------------------------------------------------------- reading


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numeric(value: object) -> float | None:
    """A metric value as float; None for values that are not metrics (text, lists, bools).

    JSON ``null`` counts as a missing number (NaN), so a metric a run could not compute keeps its
    column instead of silently dropping it.
    """
    if value is None:
        return math.nan
    return float(value) if _is_number(value) else None


def _read(path: PathLike) -> Record:
    """Read and validate one evaluation JSON; every problem is a ValueError naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{p}: not valid evaluation JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in (*IDENTITY, "metrics") if key not in data]
    if missing:
        raise ValueError(f"{p}: missing key(s) {missing}")
    for key in _TEXT_KEYS:
        if not isinstance(data[key], str) or not data[key]:
            raise ValueError(f"{p}: {key!r} must be a non-empty string, got {data[key]!r}")
    if not _is_number(data["softness"]) or not 0 <= data["softness"] <= 1:
        raise ValueError(f"{p}: 'softness' must be a number in [0, 1], got {data['softness']!r}")
    pos = data["softness_pos"]
    if pos is not None and (not _is_number(pos) or not 0 <= pos <= 1):
        raise ValueError(f"{p}: 'softness_pos' must be null or a number in [0, 1], got {pos!r}")
    if not isinstance(data["seed"], int) or isinstance(data["seed"], bool):
        raise ValueError(f"{p}: 'seed' must be an integer, got {data['seed']!r}")
    if not isinstance(data["metrics"], dict):
        raise ValueError(f"{p}: 'metrics' must be an object")
    clash = sorted(set(data["metrics"]) & {*IDENTITY, "n_seeds"})
    if clash:
        raise ValueError(f"{p}: metric name(s) {clash} clash with table columns")
    return p, data


def _load(paths: Iterable[PathLike]) -> list[Record]:
    """Read every file, rejecting two files that claim the same run (they would bias the means)."""
    records = [_read(path) for path in paths]
    if not records:
        raise ValueError("no evaluation JSON files given")
    seen: dict[tuple, Path] = {}
    for path, data in records:
        key = tuple(data[k] for k in IDENTITY)
        if key in seen:
            run = dict(zip(IDENTITY, key, strict=True))
            raise ValueError(f"{path}: same run as {seen[key]} ({run})")
        seen[key] = path
    return records


def _identity(data: dict[str, Any]) -> dict[str, Any]:
    row = {key: data[key] for key in IDENTITY}
    row["softness"] = float(row["softness"])
    row["softness_pos"] = math.nan if row["softness_pos"] is None else float(row["softness_pos"])
    return row


def _entries(path: Path, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{path}: {key!r} must be a list of objects")
    return entries


def _frame(rows: list[dict[str, Any]], columns: Sequence[str], sort: Sequence[str]) -> pd.DataFrame:
    """Rows -> DataFrame with fixed identity dtypes, sorted stably (keeps layer order in a run)."""
    df = pd.DataFrame(rows, columns=list(columns))
    for col in df.columns:
        if col in _TEXT_COLUMNS:
            df[col] = df[col].astype("str")
        elif col == "seed":
            df[col] = df[col].astype("int64")
        elif col in ("softness", "softness_pos"):
            df[col] = df[col].astype("float64")
    return df.sort_values(list(sort), kind="stable", na_position="first").reset_index(drop=True)


def _runs_frame(records: list[Record]) -> pd.DataFrame:
    rows, metrics = [], {}
    for _, data in records:
        row = _identity(data)
        for key, value in data["metrics"].items():
            number = _numeric(value)
            if number is not None:
                row[key] = number
                metrics.setdefault(key, None)
        rows.append(row)
    df = _frame(rows, [*IDENTITY, *metrics], IDENTITY)
    return df.astype({key: "float64" for key in metrics})


def _bounds_frame(records: list[Record]) -> pd.DataFrame:
    rows, extra = [], {}
    for path, data in records:
        for entry in _entries(path, data, "bounds"):
            missing = [key for key in _BOUND_REQUIRED if key not in entry]
            if missing:
                raise ValueError(f"{path}: a 'bounds' entry misses key(s) {missing}")
            row = _identity(data)
            for key, value in entry.items():
                col = _BOUND_RENAME.get(key, key)
                if col in IDENTITY:
                    raise ValueError(f"{path}: bound key {key!r} clashes with a table column")
                if isinstance(value, str) or _is_number(value) or value is None:
                    row[col] = value
                    if col not in _BOUND_COLUMNS:
                        extra.setdefault(col, None)
            rows.append(row)
    return _frame(rows, [*IDENTITY, *_BOUND_COLUMNS, *extra], IDENTITY)


def _angles_frame(records: list[Record]) -> pd.DataFrame:
    rows, metrics = [], {}
    for path, data in records:
        for entry in _entries(path, data, "angle_sweep"):
            if not _is_number(entry.get("angle")):
                raise ValueError(f"{path}: an 'angle_sweep' entry has no numeric 'angle'")
            row = {**_identity(data), "angle": float(entry["angle"])}
            for key, value in entry.items():
                number = _numeric(value)
                if key != "angle" and number is not None:
                    if key in row:
                        raise ValueError(f"{path}: angle key {key!r} clashes with a table column")
                    row[key] = number
                    metrics.setdefault(key, None)
            rows.append(row)
    df = _frame(rows, [*IDENTITY, "angle", *metrics], [*IDENTITY, "angle"])
    return df.astype({"angle": "float64", **{key: "float64" for key in metrics}})


def load_runs(paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per evaluation JSON: identity columns, then one float column per numeric metric.

    Runs of different tasks may be mixed; a metric a run does not have is NaN there.
    """
    return _runs_frame(_load(paths))


def bounds_table(paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per run x soft layer: identity, ``layer``, its ``b``, ``measured`` and ``bound``.

    The record's ``name``, ``group`` and ``filter`` become ``layer``, ``layer_group`` and
    ``layer_filter`` so they cannot clash with the run's identity columns.
    """
    return _bounds_frame(_load(paths))


def angles_table(paths: Iterable[PathLike]) -> pd.DataFrame:
    """One row per run x swept angle: identity, ``angle`` (degrees), every numeric sweep value."""
    return _angles_frame(_load(paths))


# ------------------------------------------------------------------------------------ summarising


def _metric_columns(df: pd.DataFrame, exclude: Iterable[str]) -> list[str]:
    skip = set(exclude)
    return [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std (ddof=1; NaN for a single seed) over seeds per configuration.

    Columns: the configuration (identity without ``seed``), ``n_seeds``, then ``{m}_mean`` and
    ``{m}_std`` for every metric m. A run with a missing ``softness_pos`` (NaN) keeps its group.
    """
    missing = [c for c in IDENTITY if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table misses identity column(s) {missing}")
    metrics = _metric_columns(runs, IDENTITY)
    grouped = runs.groupby(list(CONFIG), dropna=False, sort=True)
    out = grouped.size().rename("n_seeds").to_frame()
    if metrics:
        mean, std = grouped[metrics].mean(), grouped[metrics].std(ddof=1)
        for m in metrics:
            out[f"{m}_mean"] = mean[m]
            out[f"{m}_std"] = std[m]
    out = out.reset_index()
    out["n_seeds"] = out["n_seeds"].astype("int64")
    return out


# ---------------------------------------------------------------------------------------- writing


def _cell(value: object) -> str:
    if hasattr(value, "item"):  # numpy scalar -> Python scalar
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", r"\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table: header, separator, one line per row; 4 significant digits.

    Written by hand (no ``tabulate``); cells are padded so the file also reads well as plain text.
    Numeric columns are right-aligned; missing values are empty cells.
    """
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    header = [_cell(str(c)) for c in df.columns]
    body = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max([3, len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]
    layout = list(zip(widths, numeric, strict=True))

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if n else c.ljust(w) for c, (w, n) in zip(cells, layout, strict=True))
        return "| " + " | ".join(padded) + " |"

    sep = line(["-" * (w - 1) + ":" if n else "-" * w for w, n in layout])
    return "\n".join([line(header), sep, *(line(r) for r in body)]) + "\n"


def write_table(df: pd.DataFrame, stem: PathLike) -> tuple[Path, Path]:
    """Write ``{stem}.csv`` (full precision, round-trips with ``read_table``) and ``{stem}.md``."""
    stem = Path(stem)
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    atomic_write_text(csv, df.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(md, markdown_table(df))
    return csv, md


def read_table(path: PathLike) -> pd.DataFrame:
    """Read a table written by ``write_table``, text columns kept as text (a dataset "NA" stays)."""
    p = Path(path)
    try:
        header = pd.read_csv(p, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{p}: not a readable CSV table ({err})") from err
    text = [c for c in header if c in _TEXT_COLUMNS]
    return pd.read_csv(
        p,
        dtype={c: "str" for c in text},
        keep_default_na=False,
        na_values={c: ["", "nan", "NaN"] for c in header if c not in _TEXT_COLUMNS},
    )


def _drop_empty(df: pd.DataFrame, keep: Iterable[str]) -> pd.DataFrame:
    """Drop non-identity columns that are all NaN: another task's metrics in a mixed load."""
    keep = set(keep)
    return df[[c for c in df.columns if c in keep or not df[c].isna().all()]]


def aggregate(paths: Iterable[PathLike], out_dir: PathLike) -> list[Path]:
    """Write runs / summary / bounds / angles tables (.csv + .md) per (task, dataset) into out_dir.

    File names are ``{task}_{dataset}_{table}.csv`` / ``.md``. Returns the written paths, CSV then
    Markdown for each table, tasks in sorted order.
    """
    records = _load(paths)
    out = Path(out_dir)
    runs, bounds, angles = _runs_frame(records), _bounds_frame(records), _angles_frame(records)
    written: list[Path] = []
    for (task, dataset), task_runs in runs.groupby(["task", "dataset"], sort=True):
        for name in (task, dataset):
            if not _NAME_RE.match(name):
                raise ValueError(f"task/dataset name {name!r} is not safe in a file name")
        # a metric some run of this (task, dataset) reported keeps its column, NaN or not
        reported = {
            key
            for _, data in records
            if (data["task"], data["dataset"]) == (task, dataset)
            for key in data["metrics"]
        }
        task_runs = task_runs[[c for c in task_runs.columns if c in IDENTITY or c in reported]]
        tables = {
            "runs": task_runs,
            "summary": summarise(task_runs),  # keeps a one-seed std column (NaN) beside its mean
            "bounds": _select(bounds, task, dataset, [*IDENTITY, *_BOUND_COLUMNS]),
            "angles": _select(angles, task, dataset, [*IDENTITY, "angle"]),
        }
        for table, df in tables.items():
            written.extend(write_table(df, out / f"{task}_{dataset}_{table}"))
    return written


def _select(df: pd.DataFrame, task: str, dataset: str, keep: Sequence[str]) -> pd.DataFrame:
    rows = df[(df["task"] == task) & (df["dataset"] == dataset)].reset_index(drop=True)
    return _drop_empty(rows, keep)
