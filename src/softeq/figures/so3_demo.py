"""The SO(3) demo's figure: the distribution of the equivariance error against b, as box plots.

Left, the error ||f_b(Rx) - R f_b(x)|| itself (the reference notebook's statistic, not
normalised); right, the same divided by ||f_b(x)||.  One box per b over every (initialisation,
input, rotation) of the table, whiskers at 1.5 IQR, outliers not drawn (as the reference's), the
mean marked.  Drawing only: the numbers come from the table ``softeq so3-demo`` writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from softeq.figures.plots import mark_softness_ends
from softeq.figures.style import PANEL_H, PANEL_W, figure_style, save_figure

__all__ = ["SO3_PANELS", "plot_so3_demo", "so3_demo_rows"]

PathLike = str | os.PathLike[str]

SO3_PANELS = {
    "error": r"$\|f_b(Rx) - R\,f_b(x)\|$",
    "relative": r"$\|f_b(Rx) - R\,f_b(x)\| \,/\, \|f_b(x)\|$",
}
"""The panels: the error as the reference draws it, and relative to the output's norm."""


def so3_demo_rows(table: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """The table with a ``relative`` column, sorted by b; raises naming a missing column, an
    empty table or a non-finite error."""
    missing = [c for c in ("b", "error", "output_norm") if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")
    if table.empty:
        raise ValueError(f"{where}: no rows")
    bad = ~np.isfinite(table[["b", "error", "output_norm"]].to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        raise ValueError(f"{where}: non-finite values in row {int(np.flatnonzero(bad)[0])}")
    rows = table.copy()
    norm = rows["output_norm"].to_numpy(dtype=float)
    rows["relative"] = rows["error"].to_numpy(dtype=float) / np.where(norm > 0, norm, np.nan)
    return rows.sort_values("b", kind="stable").reset_index(drop=True)


def plot_so3_demo(table_csv: PathLike, out_png: PathLike, *, title: str | None = None) -> Path:
    """Draw the demo's box plots from its table; returns the PNG path."""
    rows = so3_demo_rows(pd.read_csv(table_csv), str(table_csv))
    bs = np.sort(rows["b"].unique())
    width = 0.7 * (float(np.min(np.diff(bs))) if len(bs) > 1 else 0.1)
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(bs)))
    with figure_style():
        fig = Figure(figsize=(2 * PANEL_W, PANEL_H + 0.5), layout="constrained")
        axes = fig.subplots(1, len(SO3_PANELS))
        for ax, (column, label) in zip(axes, SO3_PANELS.items(), strict=True):
            data = [rows.loc[rows["b"] == b, column].dropna().to_numpy() for b in bs]
            boxes = ax.boxplot(
                data,
                positions=bs,
                widths=width,
                showfliers=False,
                patch_artist=True,
                manage_ticks=False,
                medianprops={"color": "black", "linewidth": 1.2},
            )
            for patch, color in zip(boxes["boxes"], colors, strict=True):
                patch.set_facecolor(color)
                patch.set_alpha(0.85)
            means = [float(np.mean(d)) if len(d) else np.nan for d in data]
            ax.plot(bs, means, color="black", marker="o", markersize=3, linewidth=0.9)
            ax.set_xlabel("softness b (filter shrink)")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0.0)
            mark_softness_ends(ax, ("b=0 exact", "b=1 plain"))
            at0 = rows.loc[rows["b"] == 0.0, column]
            if len(at0):
                ax.text(
                    0.02,
                    0.97,
                    f"max at b=0: {at0.max():.1e}",
                    transform=ax.transAxes,
                    va="top",
                    fontsize=7,
                    color="0.3",
                )
        counts = rows.groupby("b").size()
        models = rows["model"].nunique() if "model" in rows.columns else 1
        handles = [Line2D([], [], color="black", marker="o", markersize=3, label="mean")]
        fig.legend(
            handles=handles,
            loc="outside upper center",
            frameon=False,
            title=title
            or f"SO(3) demo: {int(counts.min())} (x, R) per b over {models} initialisations",
        )
        return save_figure(fig, out_png)
