"""The two ablation tables: filters compared at equal softness, and projector construction time.

- Filters: every setting (dataset, backbone, group, b, pos) run with two or more filters, one row
  per filter with its mask kind, so hard (0/1) and smooth masks compare at equal softness
  (docs/method.md §2).
- Construction time: the table of ``softeq.timing.measure_construction_timing`` (block-Schur
  against the dense Kronecker SVD, docs/method.md §3) with the speed-up per width.

Both are written like the paper tables: ``.csv``, ``.md`` and ``.tex``, atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from softeq.results.columns import (
    COLUMNS,
    display_values,
    fmt_b,
    numeric,
    read_summaries,
    value_names,
)
from softeq.results.writers import cell, write_table_files

__all__ = [
    "TIMING_REQUIRED",
    "filter_ablation",
    "read_timing",
    "write_construction_timing",
    "write_filter_ablation",
]

PathLike = str | os.PathLike[str]

_MASKS = {
    "shrink": "scaled (f = b)",
    "threshold": "hard (0/1)",
    "rank": "smooth (exp tail)",
    "rank-hard": "hard (0/1)",
}
_FILTER_ORDER = {f: i for i, f in enumerate(_MASKS)}


def filter_ablation(summary_csv: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """Rows of settings (dataset, backbone, group, b, pos) run with two or more filters.

    One row per filter, with its ``mask`` kind (hard 0/1 for ``threshold`` and ``rank-hard``,
    smooth for ``rank``, scaled for ``shrink``) and the task's table columns, so hard and soft
    masks compare at equal softness. Raises if no setting has two filters.
    """
    df = read_summaries(summary_csv)
    tasks = sorted(df["task"].unique())
    if len(tasks) != 1 or tasks[0] not in COLUMNS:
        raise ValueError(f"the filter ablation needs one known task per table, got {tasks}")
    task = tasks[0]
    keys = ["dataset", "backbone", "group", "softness", "softness_pos"]
    df = df.copy()
    df["_pos"] = numeric(df, "softness_pos").fillna(-1.0)
    counts = df.groupby([*keys[:-1], "_pos"], dropna=False)["filter"].transform("nunique")
    df = df[counts >= 2].reset_index(drop=True)
    if df.empty:
        raise ValueError("no setting was run with two or more filters: nothing to compare")
    values = display_values(task, df, None)
    rows = pd.concat(
        [
            df[["dataset", "backbone", "group", "softness", "softness_pos", "filter"]],
            pd.DataFrame({"mask": df["filter"].map(_MASKS).fillna(""), "n_seeds": df["n_seeds"]}),
            values[[c for c in value_names(task) if c in values.columns]],
        ],
        axis=1,
    )
    rows["_f"] = rows["filter"].map(_FILTER_ORDER).fillna(len(_FILTER_ORDER))
    rows["_p"] = df["_pos"]
    rows = rows.sort_values(
        ["dataset", "backbone", "group", "softness", "_p", "_f", "filter"], kind="stable"
    )
    return rows.drop(columns=["_f", "_p"]).reset_index(drop=True).assign(task=task)


def write_filter_ablation(
    summary_csv: PathLike | Iterable[PathLike], out_stem: PathLike
) -> list[Path]:
    """Write the hard-vs-soft filter ablation (:func:`filter_ablation`) as .csv, .md and .tex."""
    rows = filter_ablation(summary_csv)
    task = rows["task"].iloc[0]
    columns = COLUMNS[task][:4] if task != "trajectory" else COLUMNS[task][:3]
    md_header = ["dataset", "backbone", "group", "b", "pos", "filter", "mask", "seeds"]
    md_header += [c.md for c in columns]
    tex_header = ["Dataset", "Backbone", "Group", "$b$", "Pos.", "Filter", "Mask", "Seeds"]
    tex_header += [c.tex for c in columns]
    cells, starts, previous = [], [], None
    for i, r in enumerate(rows.to_dict("records")):
        block = (r["dataset"], r["backbone"], r["group"], r["softness"], r["softness_pos"])
        if block != previous:
            starts.append(i)
        previous = block
        pos = r["softness_pos"]
        seeds = r["n_seeds"]
        cells.append(
            [
                r["dataset"],
                r["backbone"],
                r["group"],
                fmt_b(r["softness"]),
                "" if pos is None or math.isnan(pos) else fmt_b(pos),
                r["filter"],
                r["mask"],
                "" if seeds is None or math.isnan(seeds) else str(int(seeds)),
                *(cell(r.get(c.name, math.nan), r.get(f"{c.name}_std")) for c in columns),
            ]
        )
    return write_table_files(rows, out_stem, md_header, tex_header, cells, starts, 8)


# --------------------------------------------------------------------------- construction time

# The columns a timing table needs (``softeq.timing`` also writes ``max_abs_diff``).
TIMING_REQUIRED = ("width", "schur_s", "dense_s")


def read_timing(timing_csv: PathLike) -> pd.DataFrame:
    """A construction-timing table sorted by width; missing columns or no rows raise."""
    path = Path(timing_csv)
    df = pd.read_csv(path)
    missing = [c for c in TIMING_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; needs {list(TIMING_REQUIRED)}")
    if df.empty:
        raise ValueError(f"{path}: no rows")
    return df.sort_values("width", kind="stable").reset_index(drop=True)


def write_construction_timing(timing_csv: PathLike, out_stem: PathLike) -> list[Path]:
    """The Schur-vs-SVD ablation table: width, seconds each way and the speed-up (dense / Schur).

    Widths where the dense construction was skipped have empty dense cells. Writes .csv, .md and
    .tex like the paper tables.
    """
    df = read_timing(timing_csv)
    rows = df.copy()
    rows["speedup"] = rows["dense_s"] / rows["schur_s"]
    md_header = ["width", "block-Schur (s)", "dense SVD (s)", "speed-up (×)"]
    tex_header = ["Width", r"Block-Schur (s)", r"Dense SVD (s)", r"Speed-up ($\times$)"]
    cells = []
    for r in rows.to_dict("records"):
        cells.append(
            [
                str(int(r["width"])),
                _seconds(r["schur_s"]),
                _seconds(r["dense_s"]),
                ""
                if math.isnan(r["speedup"])
                else f"{r['speedup']:,.3g}"
                if r["speedup"] < 100
                else f"{r['speedup']:,.0f}",
            ]
        )
    return write_table_files(rows, out_stem, md_header, tex_header, cells, [0], 1)


def _seconds(value: float) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.3g}"
