"""Figure 2: the tunability study, soft equivariance against residual pathway priors (RPP).

For one (dataset, backbone) of a classification summary table: clean, rotated and combined
accuracy and the invariance error against the knob b, one line per method: soft equivariance
(filter ``shrink``: b the softness) and RPP (filter ``rpp``: b = sigma_free / sigma_eq, the prior
ratio 1 / b^2; docs/method.md §7).  b = 0 (exactly equivariant for both) and b = 1 (the plain
model; equal priors for RPP) are marked.  Drawing only: the numbers come from the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from softeq.figures.plots import END_MARK, mark_softness_ends
from softeq.figures.style import LINESTYLES, OKABE_ITO, PANEL_H, figure_style, save_figure
from softeq.results.aggregate import read_table

__all__ = ["FIGURE2_METHODS", "FIGURE2_PANELS", "figure2_rows", "plot_figure2"]

PathLike = str | os.PathLike[str]

FIGURE2_METHODS = {"shrink": "soft equivariance", "rpp": "RPP"}
"""The filters compared (table value -> legend label)."""
FIGURE2_PANELS = {
    "acc": "clean accuracy (%)",
    "rot_acc": "rotated accuracy (%)",
    "combined": "combined accuracy (%)",
    "inv_error": "invariance error (KL, nats)",
}
_PERCENT = ("acc", "rot_acc", "combined")


def figure2_rows(summary: pd.DataFrame, backbone: str, where: str = "summary") -> pd.DataFrame:
    """The rows of ``backbone`` for both methods (positional softness equal to b), sorted by b;
    raises naming what is missing: a column, the backbone, or a method's runs."""
    needed = ["backbone", "filter", "softness", "softness_pos"]
    needed += [f"{p}_{s}" for p in FIGURE2_PANELS for s in ("mean", "std")]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")
    rows = summary[
        (summary["backbone"] == backbone) & (summary["softness"] == summary["softness_pos"])
    ]
    if rows.empty:
        raise ValueError(f"{where}: no runs of backbone {backbone!r}")
    absent = [m for m in FIGURE2_METHODS if not (rows["filter"] == m).any()]
    if absent:
        raise ValueError(f"{where}: backbone {backbone!r} has no runs with filter {absent}")
    rows = rows[rows["filter"].isin(list(FIGURE2_METHODS))]
    return rows.sort_values(["filter", "softness"], kind="stable").reset_index(drop=True)


def plot_figure2(
    summary_csv: PathLike, out_png: PathLike, backbone: str, *, title: str | None = None
) -> Path:
    """Draw Figure 2 for ``backbone`` from a summary table; returns the PNG path."""
    rows = figure2_rows(read_table(Path(summary_csv)), backbone, str(summary_csv))
    with figure_style():
        fig = Figure(figsize=(2.6 * len(FIGURE2_PANELS), PANEL_H + 0.5), layout="constrained")
        axes = fig.subplots(1, len(FIGURE2_PANELS))
        handles = []
        for i, (method, label) in enumerate(FIGURE2_METHODS.items()):
            sub = (
                rows[rows["filter"] == method]
                .groupby("softness", sort=True)
                .mean(numeric_only=True)
            )
            style = {"color": OKABE_ITO[i], "linestyle": LINESTYLES[i]}
            x = sub.index.to_numpy(dtype=float)
            for ax, panel in zip(axes, FIGURE2_PANELS, strict=True):
                scale = 100.0 if panel in _PERCENT else 1.0
                y = sub[f"{panel}_mean"].to_numpy() * scale
                s = np.nan_to_num(sub[f"{panel}_std"].to_numpy()) * scale
                ax.fill_between(x, y - s, y + s, color=style["color"], alpha=0.18, lw=0)
                ax.plot(x, y, marker="o", **style)
                for end, marker in ((0.0, "s"), (1.0, "D")):
                    at = np.isclose(x, end)
                    ax.plot(x[at], y[at], marker=marker, mfc=style["color"], **END_MARK)
            handles.append(Line2D([], [], marker="o", label=label, **style))
        for ax, (panel, ylabel) in zip(axes, FIGURE2_PANELS.items(), strict=True):
            ax.set_xlabel(r"b  (RPP: $\sigma_{free}/\sigma_{eq}$)")
            ax.set_ylabel(ylabel)
            mark_softness_ends(ax, ("b=0 exact", "b=1 plain"))
            if panel == "inv_error":
                ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        marks = [
            Line2D([], [], marker="s", mfc="0.7", label="b=0", **END_MARK),
            Line2D([], [], marker="D", mfc="0.7", label="b=1", **END_MARK),
        ]
        fig.legend(
            handles=handles + marks,
            loc="outside upper center",
            ncols=4,
            frameon=False,
            title=title,
        )
        return save_figure(fig, out_png)
