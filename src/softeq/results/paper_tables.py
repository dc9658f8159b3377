"""Tables 1-3 of the paper from ``aggregate``'s summary CSVs, with the reported numbers beside.

Each table is built once as a DataFrame in display units (``softeq.results.columns``) and written
three ways, atomically: ``.csv`` (numbers, full precision, one column per value and its std over
seeds), ``.md`` and ``.tex`` (a booktabs ``tabular``, "mean ± std" cells, 2 decimals as in the
paper).

- Table 1 (classification): clean / rotated top-1 accuracy, combined sqrt(acc * rot_acc),
  invariance error KL x 1e-2; one block per dataset and backbone.
- Table 2 (segmentation): mIoU, rotated mIoU, combined, equivariance error KL x 1e-2.
- Table 3 (trajectories): one row per scene (datasets ``<family>-<scene>``) and the mean over the
  family's scenes; summed-over-steps cADE, cFDE and equivariance error as the paper reports them,
  then the standard mean-over-steps ADE, FDE, combined ADE and equivariance error.

Rows are named from the softness columns (:func:`softeq.results.columns.setting_label`). With
``reported=True`` the paper's numbers (``reported.csv``, see ``softeq.results.reported``) follow
the matching dataset and backbone in rows named ``reported: <setting>``, whose ``source`` cell says
where their numbers come from (``reported (s)``: a secondary source; docs/paper.md). A number
of no named model (backbone ``unknown``, e.g. CIFAR's) is shown once per dataset the table holds.
The CIFAR table (``paper_cifar``) is Table 1's layout over the CIFAR summaries.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from softeq.data.catalog import ETHUCY_SCENES, SYNTHETIC_SCENES
from softeq.results.columns import (
    COLUMNS,
    TASKS,
    Column,
    display_values,
    numeric,
    read_summaries,
    setting_label,
    shown_columns,
    value_names,
)
from softeq.results.reported import (
    UNKNOWN_BACKBONE,
    read_reported,
    reported_numbers,
    source_label,
)
from softeq.results.writers import cell, write_table_files

__all__ = ["paper_table", "write_paper_table"]

PathLike = str | os.PathLike[str]

_SETTING_ORDER = {"base": 0, "strict": 1, "ours": 2}
_MEAN_SCENE = "mean"


def _kind(label: str) -> str:
    return label.split(" ", 1)[0]


def _backbone_order(
    task: str, backbones: Iterable[str], reported_csv: PathLike | None
) -> list[str]:
    """The paper's order for the paper's backbones, then the others alphabetically."""
    paper = [b for (_, b) in reported_numbers(reported_csv).get(task, {})]
    known = list(dict.fromkeys(paper))
    present = set(backbones)
    return [b for b in known if b in present] + sorted(present - set(known))


def paper_table(
    summary_csvs: PathLike | Iterable[PathLike],
    task: str,
    reported: bool = False,
    *,
    pred_len: int | None = None,
    reported_csv: PathLike | None = None,
) -> pd.DataFrame:
    """The table's rows as numbers in display units (what ``write_paper_table`` writes).

    Columns: ``dataset`` (trajectories: the family, plus ``scene``), ``backbone``, ``setting``,
    ``source`` (``ours`` or ``reported (...)``), ``group``, ``filter``, ``softness``,
    ``softness_pos``, ``n_seeds``, then each value and its ``_std`` (see the module docstring).
    Trajectories: ``pred_len`` fills in the steps where a summary has no ``ade_sum``; the
    ``mean`` scene averages the per-scene means of every setting over the scenes it has
    (``n_scenes``), std left empty. ``reported_csv`` replaces the shipped ``reported.csv``.
    """
    if task not in COLUMNS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    df = read_summaries(summary_csvs)
    df = df[df["task"] == task].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"the summary tables hold no {task!r} rows")
    values = display_values(task, df, pred_len)
    show_pos = task != "trajectory"
    rows = pd.DataFrame(
        {
            "dataset": df["dataset"].astype(str),
            "backbone": df["backbone"].astype(str),
            "setting": [
                setting_label(b, p, g, f, show_pos=show_pos)
                for b, p, g, f in zip(
                    df["softness"], df["softness_pos"], df["group"], df["filter"], strict=True
                )
            ],
            "source": "ours",
            "group": df["group"].astype(str),
            "filter": df["filter"].astype(str),
            "softness": numeric(df, "softness"),
            "softness_pos": numeric(df, "softness_pos"),
            "n_seeds": numeric(df, "n_seeds"),
        }
    )
    rows = pd.concat([rows, values], axis=1)
    if task == "trajectory":
        rows = _with_scenes(rows)
    rows = _disambiguate(rows)
    if reported:
        rows = pd.concat([rows, _reported_rows(task, rows, reported_csv)], ignore_index=True)
    return _sorted(task, rows, reported_csv)


def _with_scenes(rows: pd.DataFrame) -> pd.DataFrame:
    """Split ``<family>-<scene>`` datasets and add the mean over scenes per family and setting."""
    split = rows["dataset"].str.split("-", n=1, expand=True)
    rows = rows.copy()
    rows["scene"] = split[1] if split.shape[1] > 1 else None
    rows["dataset"] = split[0]
    rows["scene"] = rows["scene"].fillna("")
    rows["n_scenes"] = 1.0
    keys = ["dataset", "backbone", "setting", "source", "group", "filter", "softness"]
    values = [c for c in value_names("trajectory") if not c.endswith("_std")] + ["pred_len"]
    scened = rows[rows["scene"] != ""]
    means = []
    for key, sub in scened.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key, strict=True))
        row.update({c: sub[c].mean() for c in values})
        row.update(
            scene=_MEAN_SCENE,
            softness_pos=sub["softness_pos"].mean(),
            n_seeds=sub["n_seeds"].min(),
            n_scenes=float(len(sub)),
        )
        means.append(row)
    return pd.concat([rows, pd.DataFrame(means)], ignore_index=True) if means else rows


def _disambiguate(rows: pd.DataFrame) -> pd.DataFrame:
    """Append group / filter to base and strict labels that repeat within a block."""
    block = ["dataset", "backbone", *(["scene"] if "scene" in rows.columns else [])]
    rows = rows.copy()
    dup = rows.duplicated([*block, "setting"], keep=False)
    for i in rows.index[dup]:
        label = rows.at[i, "setting"]
        if not label.startswith("ours"):
            rows.at[i, "setting"] = f"{label[:-1]}, {rows.at[i, 'group']}, {rows.at[i, 'filter']})"
    return rows


def _reported_rows(task: str, rows: pd.DataFrame, reported_csv: PathLike | None) -> pd.DataFrame:
    """Rows of reported numbers for the (dataset, backbone) pairs the table holds."""
    present = set(zip(rows["dataset"], rows["backbone"], strict=True))
    if task == "trajectory":
        present = {
            (f"{d}-{s}", b)
            for d, s, b in zip(rows["dataset"], rows["scene"], rows["backbone"], strict=True)
        }
    datasets = {dataset for dataset, _ in present}  # a number of no named model: every dataset's
    grouped: dict[tuple[str, str, str], list] = {}
    for n in read_reported(reported_csv):
        shown = (n.dataset, n.backbone) in present
        shown |= n.backbone == UNKNOWN_BACKBONE and n.dataset in datasets
        if n.task == task and shown:
            grouped.setdefault((n.dataset, n.backbone, n.setting), []).append(n)
    out = []
    for (dataset, backbone, setting), numbers in grouped.items():
        row = {
            "dataset": dataset,
            "backbone": backbone,
            "setting": f"reported: {setting}",
            "source": source_label(n.source for n in numbers),
            **{n.metric: n.value for n in numbers},
        }
        if task == "trajectory":
            row["dataset"], row["scene"] = dataset.split("-", 1)
        out.append(row)
    return pd.DataFrame(out, columns=list(rows.columns))


def _sorted(task: str, rows: pd.DataFrame, reported_csv: PathLike | None) -> pd.DataFrame:
    backbones = _backbone_order(task, rows["backbone"], reported_csv)
    order = {b: i for i, b in enumerate(backbones)}
    rows = rows.copy()
    key = pd.DataFrame(index=rows.index)
    key["dataset"] = rows["dataset"]
    if "scene" in rows.columns:
        known = {s: i for i, s in enumerate((*ETHUCY_SCENES, *SYNTHETIC_SCENES))}
        key["scene_rank"] = [
            10_000 if s == _MEAN_SCENE else known.get(s, 1_000) for s in rows["scene"]
        ]
        key["scene"] = rows["scene"]
    key["backbone"] = rows["backbone"].map(order)
    key["reported"] = (rows["source"] != "ours").astype(int)
    key["kind"] = [_SETTING_ORDER.get(_kind(s), 3) for s in rows["setting"]]
    key["group"] = rows["group"].fillna("")
    key["filter"] = rows["filter"].fillna("")
    key["softness"] = rows["softness"].fillna(-1.0)
    key["softness_pos"] = rows["softness_pos"].fillna(-1.0)
    idx = key.sort_values(list(key.columns), kind="stable").index
    out = rows.loc[idx].reset_index(drop=True)
    front = ["dataset", *(["scene"] if "scene" in out.columns else []), "backbone", "setting"]
    rest = [c for c in out.columns if c not in front]
    return out[front + rest]


# --------------------------------------------------------------------------------------- writing


def _display(
    task: str, rows: pd.DataFrame, columns: Sequence[Column] | None = None
) -> tuple[list[str], list[str], list[list[str]], list[int]]:
    """Headers (md, tex), string cells and the row indices where a new block starts."""
    columns = columns or COLUMNS[task]
    block_cols = ["dataset", *(["scene"] if "scene" in rows.columns else []), "backbone"]
    lead = [c for c in block_cols if c == "backbone" or rows[c].nunique() > 1 or c == "scene"]
    md = [*lead, "setting", "seeds", *(c.md for c in columns)]
    tex = [
        *(c.capitalize() for c in lead),
        "Setting",
        "Seeds",
        *(c.tex for c in columns),
    ]
    cells, starts, previous = [], [], None
    for i, row in enumerate(rows.itertuples(index=False)):
        r = row._asdict()
        block = tuple(r[c] for c in block_cols)
        if block != previous:
            starts.append(i)
        shown = [str(r[c]) if block != previous else "" for c in lead]
        previous = block
        seeds = r.get("n_seeds")
        seeds_txt = "" if seeds is None or math.isnan(seeds) else f"{int(seeds)}"
        if r.get("scene") == _MEAN_SCENE and not math.isnan(r.get("n_scenes", math.nan)):
            seeds_txt = f"{seeds_txt} ({int(r['n_scenes'])} sc.)" if seeds_txt else ""
        values = [cell(r.get(c.name, math.nan), r.get(f"{c.name}_std")) for c in columns]
        cells.append([*shown, r["setting"], seeds_txt, *values])
    return md, tex, cells, starts


def write_paper_table(
    summary_csvs: PathLike | Iterable[PathLike],
    task: str,
    out_stem: PathLike,
    reported: bool = False,
    *,
    pred_len: int | None = None,
    reported_csv: PathLike | None = None,
) -> list[Path]:
    """Write Table 1 / 2 / 3 (``task``: classification / segmentation / trajectory).

    Writes ``{out_stem}.csv`` (:func:`paper_table`'s numbers), ``.md`` and ``.tex`` (booktabs
    ``tabular``, "mean ± std" over seeds, 2 decimals), each atomically; returns the three paths.
    ``reported`` adds the paper's reported numbers for the datasets and backbones the
    table holds, in rows marked "reported: ...".
    """
    rows = paper_table(summary_csvs, task, reported, pred_len=pred_len, reported_csv=reported_csv)
    columns = shown_columns(task, rows)
    md, tex, cells, starts = _display(task, rows, columns)
    n_text = len(md) - len(columns)
    return write_table_files(rows, out_stem, md, tex, cells, starts, n_text)
