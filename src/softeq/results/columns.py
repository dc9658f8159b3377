"""What the paper tables show: column specs, display units, setting labels, summary reading.

Shared by the paper tables (``softeq.results.paper_tables``) and the filter ablation
(``softeq.results.ablations``). Values are converted once into display units: accuracies and mIoU
in percent, KL errors x 1e-2, distances in metres (docs/conventions.md §1, docs/paper.md).
Classification adds the reference code's per-batch combined score (``combined_batches``),
segmentation its equivariance error on rotated logits (``eq_error_reference``).
Trajectories add the reference code's summed-over-steps convention (``ade_sum`` = pred_len x ADE):
combined summed ADE = (ade_sum + rot_ade_sum) / 2, combined FDE, and the equivariance error summed
over steps (eq_error x pred_len; that the paper's error is summed is an inference from its size
next to the summed ADE, not verified).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from softeq.results.aggregate import read_table

__all__ = [
    "COLUMNS",
    "TASKS",
    "Column",
    "display_values",
    "fmt_b",
    "numeric",
    "read_summaries",
    "setting_label",
    "shown_columns",
    "value_names",
]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Column:
    """One displayed value: CSV name, Markdown and LaTeX headers, summary metric and scale."""

    name: str
    md: str
    tex: str
    metric: str | None = None  # summary metric (``{metric}_mean`` / ``_std``); None: derived
    scale: float = 1.0
    optional: bool = False  # shown only where some row has a value (a later metric key)


COLUMNS: dict[str, tuple[Column, ...]] = {
    "classification": (
        Column("acc", "acc. (%)", r"Acc.\ (\%)", "acc", 100.0),
        Column("rot_acc", "rot. acc. (%)", r"Rot.\ acc.\ (\%)", "rot_acc", 100.0),
        Column("combined", "combined (%)", r"Combined (\%)", "combined", 100.0),
        Column(
            "inv_error", "inv. error (×1e-2)", r"Inv.\ err.\ ($\times 10^{-2}$)", "inv_error", 1e2
        ),
        Column(
            "combined_batches",
            "combined, per batch (%)",
            r"Combined$_B$ (\%)",
            "combined_batches",
            100.0,
            optional=True,
        ),
        Column("epoch", "selected epoch", "Epoch", "selected_epoch", optional=True),
    ),
    "segmentation": (
        Column("miou", "mIoU (%)", r"mIoU (\%)", "miou", 100.0),
        Column("rot_miou", "rot. mIoU (%)", r"Rot.\ mIoU (\%)", "rot_miou", 100.0),
        Column("combined", "combined (%)", r"Combined (\%)", "combined", 100.0),
        Column("eq_error", "eq. error (×1e-2)", r"Eq.\ err.\ ($\times 10^{-2}$)", "eq_error", 1e2),
        Column(
            "eq_error_reference",
            "eq. error, reference (×1e-2)",
            r"Eq.\ err.$_{\mathrm{ref}}$ ($\times 10^{-2}$)",
            "eq_error_reference",
            1e2,
            optional=True,
        ),
    ),
    "trajectory": (
        Column("cade_sum", "cADE, summed (m)", r"cADE$_\Sigma$ (m)"),
        Column("cfde", "cFDE (m)", "cFDE (m)"),
        Column("eq_error_sum", "eq. error, summed (m)", r"Eq.\ err.$_\Sigma$ (m)"),
        Column("ade", "ADE (m)", "ADE (m)", "ade"),
        Column("fde", "FDE (m)", "FDE (m)", "fde"),
        Column("cade", "cADE (m)", "cADE (m)"),
        Column("eq_error", "eq. error (m)", r"Eq.\ err.\ (m)", "eq_error"),
        Column(
            "eq_error_batches",
            "eq. error, per batch (m)",
            r"Eq.\ err.$_B$ (m)",
            "eq_error_batches",
        ),
        Column("epoch", "selected epoch", "Epoch", "selected_epoch"),
    ),
}
TASKS = tuple(COLUMNS)


def fmt_b(value: float) -> str:
    """A softness as the tables print it (``0.5``, ``1``)."""
    return f"{float(value):g}"


def setting_label(
    softness: float,
    softness_pos: float | None,
    group: str,
    filter: str,
    *,
    show_pos: bool = True,
) -> str:
    """``base (b=1)``, ``strict (b=0)`` or ``ours (b=.., pos=.., group, filter)``.

    ``pos`` is shown only where it is known and differs from b (or ``show_pos`` forces it off):
    a model without a positional grid runs with pos = b, which says nothing.
    """
    pos = None if softness_pos is None or math.isnan(softness_pos) else float(softness_pos)
    b = float(softness)
    if b == 1.0 and pos in (None, 1.0):
        return "base (b=1)"
    if b == 0.0 and pos in (None, 0.0):
        return "strict (b=0)"
    parts = [f"b={fmt_b(b)}"]
    if show_pos and pos is not None and pos != b:
        parts.append(f"pos={fmt_b(pos)}")
    return f"ours ({', '.join([*parts, group, filter])})"


def read_summaries(summary_csvs: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """The summary tables (from ``aggregate``) concatenated; a file that is not one raises."""
    paths = [summary_csvs] if isinstance(summary_csvs, str | os.PathLike) else list(summary_csvs)
    if not paths:
        raise ValueError("no summary CSV given")
    frames = [read_table(p) for p in paths]
    required = ("task", "dataset", "backbone", "group", "filter", "softness", "softness_pos")
    for path, df in zip(paths, frames, strict=True):
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: not a summary table, missing column(s) {missing}")
    return pd.concat(frames, ignore_index=True, sort=False)


def numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats; all-NaN when the summary does not have it."""
    if column in df.columns:
        return pd.to_numeric(df[column], errors="coerce").astype("float64")
    return pd.Series(np.nan, index=df.index, dtype="float64")


def display_values(task: str, df: pd.DataFrame, pred_len: float | None) -> pd.DataFrame:
    """Display-unit values (and stds) of every column spec, one row per summary row."""
    out = pd.DataFrame(index=df.index)
    for col in COLUMNS[task]:
        if col.metric is not None:
            out[col.name] = numeric(df, f"{col.metric}_mean") * col.scale
            out[f"{col.name}_std"] = numeric(df, f"{col.metric}_std") * col.scale
    if task != "trajectory":
        return out
    ade, rot_ade = numeric(df, "ade_mean"), numeric(df, "rot_ade_mean")
    # steps per prediction: ade_sum = pred_len x ade exactly, per run and so per mean
    steps = numeric(df, "ade_sum_mean") / ade
    if pred_len is not None:
        steps = steps.fillna(float(pred_len))
    cade = numeric(df, "combined_ade_mean").fillna((ade + rot_ade) / 2)
    cade_std = numeric(df, "combined_ade_std")
    out["cade"], out["cade_std"] = cade, cade_std
    cade_sum = numeric(df, "combined_ade_sum_mean")
    rot_sum = numeric(df, "rot_ade_sum_mean").fillna(rot_ade * steps)
    ade_sum = numeric(df, "ade_sum_mean").fillna(ade * steps)
    out["cade_sum"] = cade_sum.fillna((ade_sum + rot_sum) / 2)
    out["cade_sum_std"] = numeric(df, "combined_ade_sum_std").fillna(cade_std * steps)
    fde, rot_fde = numeric(df, "fde_mean"), numeric(df, "rot_fde_mean")
    out["cfde"] = numeric(df, "combined_fde_mean").fillna((fde + rot_fde) / 2)
    out["cfde_std"] = numeric(df, "combined_fde_std")
    out["eq_error_sum"] = out["eq_error"] * steps
    out["eq_error_sum_std"] = out["eq_error_std"] * steps
    out["pred_len"] = steps
    return out


def shown_columns(task: str, rows: pd.DataFrame) -> tuple[Column, ...]:
    """The task's columns a written table shows: every column, except optional ones that no row
    has a value for (summaries made before that metric key existed)."""
    return tuple(
        col
        for col in COLUMNS[task]
        if not col.optional or (col.name in rows.columns and rows[col.name].notna().any())
    )


def value_names(task: str) -> list[str]:
    """The task's value columns, each followed by its ``_std``."""
    return [name for col in COLUMNS[task] for name in (col.name, f"{col.name}_std")]
