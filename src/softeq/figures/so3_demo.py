"""The SO(3) demo's figure: the distribution of the equivariance error against b, as box plots.

The error ||f_b(Rx) - R f_b(x)|| is drawn as the reference notebook draws it (not normalised),
on a linear axis (left) and a log axis (right: b = 0 sits at round-off, many decades below the
rest; exact zeros are drawn a decade below the smallest positive error).  One box per b over
every (initialisation, input, rotation) of the table, whiskers at 1.5 IQR, outliers not drawn
(as the reference's), the mean marked.  The table's ``output_norm`` (||f_b(x)||) is kept for
readers who normalise; :func:`so3_demo_rows` adds that ratio as ``relative``.  Drawing only: the
numbers come from the table ``softeq so3-demo`` writes.
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

__all__ = ["ERROR_LABEL", "SO3_PANELS", "plot_so3_demo", "so3_demo_rows"]

PathLike = str | os.PathLike[str]

SO3_PANELS = {"linear": "linear axis", "log": "log axis"}
"""The panels: the same error on a linear and on a log axis."""
ERROR_LABEL = r"$\|f_b(Rx) - R\,f_b(x)\|$"


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


def _log_floor(errors: np.ndarray) -> float:
    """Where a log axis draws exact zeros: a decade below the smallest positive error."""
    positive = errors[errors > 0]
    return float(positive.min()) / 10 if len(positive) else 1e-20


def _boxes(ax, data: list[np.ndarray], bs: np.ndarray, width: float, colors) -> None:
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


def plot_so3_demo(table_csv: PathLike, out_png: PathLike, *, title: str | None = None) -> Path:
    """Draw the demo's box plots from its table; returns the PNG path."""
    rows = so3_demo_rows(pd.read_csv(table_csv), str(table_csv))
    bs = np.sort(rows["b"].unique())
    width = 0.7 * (float(np.min(np.diff(bs))) if len(bs) > 1 else 0.1)
    colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(bs)))
    with figure_style():
        fig = Figure(figsize=(2 * PANEL_W, PANEL_H + 0.5), layout="constrained")
        axes = fig.subplots(1, len(SO3_PANELS))
        for ax, (scale, label) in zip(axes, SO3_PANELS.items(), strict=True):
            data = [rows.loc[rows["b"] == b, "error"].to_numpy(dtype=float) for b in bs]
            if scale == "log":  # exact zeros (possible at b = 0) drawn at the floor
                floor = _log_floor(rows["error"].to_numpy(dtype=float))
                data = [np.maximum(d, floor) for d in data]
                ax.set_yscale("log")
            _boxes(ax, data, bs, width, colors)
            ax.set_xlabel("softness b")
            ax.set_ylabel(f"{ERROR_LABEL} ({label})")
            if scale == "linear":
                ax.set_ylim(bottom=0.0)
            mark_softness_ends(ax, ("b=0 exact", "b=1 plain"))
            at0 = rows.loc[rows["b"] == 0.0, "error"]
            if scale == "linear" and len(at0):
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
