"""The two ablation tables: filters compared at equal softness, and projector construction time.

- Filters: every setting (dataset, backbone, group, b, pos) run with two or more filters, one row
  per filter with its mask kind, so hard (0/1) and smooth masks compare at equal softness
  (docs/method.md §2).
- Construction time: the table of ``softeq.timing.measure_construction_timing`` (block-Schur
  against the dense Kronecker SVD, docs/method.md §3) with the speed-up per width or grid; for
  the paper's grid case the dense time at the target grid is extrapolated by a power-law fit
  (``fit_power_law``) and the paper's reported values (``reported_construction``, read from
  reported.csv) close it.

Both are written like the paper tables: ``.csv``, ``.md`` and ``.tex``, atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from softeq.results.columns import (
    COLUMNS,
    display_values,
    fmt_b,
    numeric,
    read_summaries,
    shown_columns,
    value_names,
)
from softeq.results.reported import reported_numbers
from softeq.results.writers import cell, write_table_files

__all__ = [
    "GRID_TIMING_COLUMNS",
    "TIMING_INDEX",
    "TIMING_REQUIRED",
    "filter_ablation",
    "fit_power_law",
    "read_timing",
    "reported_construction",
    "write_construction_timing",
    "write_filter_ablation",
]

PathLike = str | os.PathLike[str]

_MASKS = {
    "shrink": "scaled (f = b)",
    "threshold": "hard (0/1)",
    "rank": "smooth (exp tail)",
    "rank-hard": "hard (0/1)",
    "decay": "smooth (exp)",
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
    if task == "trajectory":
        columns = COLUMNS[task][:3]
    else:  # the metrics, with the reference's conventions where the summaries hold them
        columns = tuple(c for c in shown_columns(task, rows) if c.name != "epoch")
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

# The columns a timing table needs (``softeq.timing`` also writes ``max_abs_diff``); a pair-layer
# table is indexed by ``width``, a grid table (the paper's case) by ``grid``.
TIMING_REQUIRED = ("schur_s", "dense_s")
TIMING_INDEX = ("width", "grid")
GRID_TIMING_COLUMNS = (
    "case",
    "group",
    "grid",
    "d",
    "operator",
    "schur_s",
    "dense_s",
    "dense_source",
    "max_abs_diff",
    "fit_a",
    "fit_p",
)


def reported_construction() -> dict[str, float]:
    """The paper's Table 6 (reported.csv, task ``construction``; a secondary source): the
    equivariant projector of a map on a 14 x 14 grid (d = 196, a 38,416 x 38,416 operator)."""
    ((setting, values),) = reported_numbers()["construction"][("grid", "equivariant")].items()
    return {"grid": int(setting.split("x")[0]), **values}


def fit_power_law(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of ``seconds = a * sizes**p`` in log-log; returns ``(a, p)``.

    Needs two or more distinct sizes with positive times (raises otherwise).
    """
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.asarray(seconds, dtype=float))
    if x.size < 2 or np.unique(x).size < 2 or not np.all(np.isfinite(y)):
        raise ValueError(
            f"a power-law fit needs 2+ distinct sizes with times > 0: {sizes}, {seconds}"
        )
    p, log_a = np.polyfit(x, y, 1)
    return float(np.exp(log_a)), float(p)


def read_timing(timing_csv: PathLike) -> pd.DataFrame:
    """A construction-timing table sorted by width (or grid); missing columns or no rows raise."""
    path = Path(timing_csv)
    df = pd.read_csv(path)
    index = [c for c in TIMING_INDEX if c in df.columns]
    missing = [c for c in TIMING_REQUIRED if c not in df.columns]
    if missing or not index:
        needs = [*TIMING_REQUIRED, " or ".join(TIMING_INDEX)]
        raise ValueError(
            f"{path}: missing column(s) {missing or list(TIMING_INDEX)}; needs {needs}"
        )
    if df.empty:
        raise ValueError(f"{path}: no rows")
    if "dense_source" in df.columns:
        df["dense_source"] = df["dense_source"].fillna("").astype(str)
    return df.sort_values(index[0], kind="stable").reset_index(drop=True)


def write_construction_timing(timing_csv: PathLike, out_stem: PathLike) -> list[Path]:
    """The Schur-vs-SVD ablation table: size, seconds each way and the speed-up (dense / Schur).

    Pair-layer tables (``width``): widths where the dense construction was skipped have empty
    dense cells. Grid tables (``grid``, the paper's case): one row per grid, the dense time
    measured or extrapolated (with the fit's exponent), and in .md / .tex a last row with the
    paper's reported values (secondary source). Writes .csv, .md and .tex like the paper tables.
    """
    df = read_timing(timing_csv)
    rows = df.copy()
    rows["speedup"] = rows["dense_s"] / rows["schur_s"]
    if "grid" in rows.columns:
        return _write_grid_timing(rows, out_stem)
    md_header = ["width", "block-Schur (s)", "dense SVD (s)", "speed-up (×)"]
    tex_header = ["Width", r"Block-Schur (s)", r"Dense SVD (s)", r"Speed-up ($\times$)"]
    cells = []
    for r in rows.to_dict("records"):
        cells.append(
            [str(int(r["width"])), _seconds(r["schur_s"]), _seconds(r["dense_s"]), _ratio(r)]
        )
    return write_table_files(rows, out_stem, md_header, tex_header, cells, [0], 1)


def _write_grid_timing(rows: pd.DataFrame, out_stem: PathLike) -> list[Path]:
    md_header = ["grid", "dense SVD", "d", "operator", "block-Schur (s)", "dense SVD (s)"]
    md_header.append("speed-up (×)")
    tex_header = ["Grid", "Dense SVD", "$d$", "Operator", "Block-Schur (s)", "Dense SVD (s)"]
    tex_header.append(r"Speed-up ($\times$)")
    cells = []
    for r in rows.to_dict("records"):
        source = r["dense_source"]
        if source == "extrapolated":
            source = f"extrapolated (fit p = {r['fit_p']:.2f})"
        k = int(r["grid"])
        cells.append(
            [
                f"{k} × {k}",
                source,
                str(int(r["d"])),
                f"{int(r['operator']):,}",
                _seconds(r["schur_s"]),
                _seconds(r["dense_s"]),
                _ratio(r),
            ]
        )
    rep = reported_construction()
    k = rep["grid"]
    speedup = {"speedup": rep["dense_s"] / rep["schur_s"]}
    cells.append(
        [
            f"{k} × {k} (paper)",
            "reported (secondary source)",
            str(k * k),
            f"{k**4:,}",
            _seconds(rep["schur_s"]),
            _seconds(rep["dense_s"]),
            _ratio(speedup),
        ]
    )
    return write_table_files(rows, out_stem, md_header, tex_header, cells, [0, len(rows)], 2)


def _ratio(r: dict) -> str:
    value = r["speedup"]
    if value is None or math.isnan(value):
        return ""
    return f"{value:,.3g}" if value < 100 else f"{value:,.0f}"


def _seconds(value: float) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.3g}"
