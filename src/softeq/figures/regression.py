"""The O(5) regression figure: test MSE and invariance error against b, one column per noise
level; the soft model's ``shrink`` sweep as lines (mean +- std over seeds), MLP, EMLP (b = 0)
and RPP as horizontal reference lines.  Drawing only: the numbers come from the table of
:mod:`softeq.results.regression`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from softeq.figures.style import LINESTYLES, OKABE_ITO, PANEL_H, figure_style, save_figure
from softeq.results.aggregate import read_table

__all__ = ["REFERENCES", "ROWS", "plot_regression"]

PathLike = str | os.PathLike[str]

ROWS = {"mse": "test MSE", "inv_error": r"invariance error $|f(gx) - f(x)|$"}
REFERENCES = ("MLP", "EMLP (b=0)", "RPP")


def _panel(ax, rows: pd.DataFrame, metric: str) -> None:
    """One panel: the shrink sweep per backbone, and the reference models as lines."""
    sweep = rows[rows["filter"] == "shrink"]
    sweep = sweep[~sweep["model"].isin(("MLP",))]
    for i, (backbone, sub) in enumerate(sweep.groupby("backbone", sort=True)):
        sub = sub.sort_values("b")
        x, y = sub["b"].to_numpy(float), sub[f"{metric}_mean"].to_numpy(float)
        s = np.nan_to_num(sub[f"{metric}_std"].to_numpy(float))
        color = OKABE_ITO[i % len(OKABE_ITO)]
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.18, lw=0)
        ax.plot(x, y, marker="o", color=color, label=f"soft ({backbone})")
    for j, model in enumerate(REFERENCES):
        ref = rows[rows["model"] == model]
        for backbone, sub in ref.groupby("backbone", sort=True):
            value = float(sub[f"{metric}_mean"].mean())
            style = {"color": OKABE_ITO[(3 + j) % len(OKABE_ITO)], "linestyle": LINESTYLES[1 + j]}
            ax.axhline(value, lw=1.2, label=f"{model} ({backbone})", **style)
    ax.set_xlabel("b")
    if metric == "mse" and (rows[f"{metric}_mean"] > 0).all():
        ax.set_yscale("log")


def plot_regression(table_csv: PathLike, out_png: PathLike, *, title: str | None = None) -> Path:
    """Draw the figure from the regression table; returns the PNG path."""
    rows = read_table(Path(table_csv))
    missing = [c for c in ("noise", "model", "b", "mse_mean", "inv_error_mean") if c not in rows]
    if missing or rows.empty:
        raise ValueError(f"{table_csv}: not a regression table (missing {missing} or no rows)")
    levels = sorted(rows["noise"].unique())
    with figure_style():
        fig = Figure(figsize=(3.0 * len(levels) + 1.5, 2 * PANEL_H + 0.6), layout="constrained")
        axes = np.asarray(fig.subplots(len(ROWS), len(levels), squeeze=False))
        for col, level in enumerate(levels):
            for row, (metric, label) in enumerate(ROWS.items()):
                ax = axes[row, col]
                _panel(ax, rows[rows["noise"] == level], metric)
                ax.set_title(rf"noise $\sigma$ = {level:g}" if row == 0 else "")
                if col == 0:
                    ax.set_ylabel(label)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", frameon=False, title=title)
        return save_figure(fig, out_png)
