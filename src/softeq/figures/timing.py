"""The construction-timing figure, drawn from the timing table CSV only.

The table comes from ``softeq.timing`` (``measure_construction_timing`` for pair layers,
``measure_grid_timing`` for the paper's grid case), written by the ``softeq construction-timing``
stage; this module never builds a projector.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from softeq.figures.style import OKABE_ITO, PANEL_H, PANEL_W, figure_style, save_figure
from softeq.results.ablations import read_timing, reported_construction

__all__ = ["plot_construction_timing"]

PathLike = str | os.PathLike[str]


def plot_construction_timing(timing_csv: PathLike, out_png: PathLike, *, pdf: bool = False) -> Path:
    """Construction seconds against size, log scale, block-Schur vs dense SVD.

    Pair-layer tables: seconds against layer width; dense points that were skipped (too large)
    are missing and the dense line ends there. Grid tables (the paper's case): seconds against
    the grid points d = k^2, the measured dense points, the fitted power law carried to the
    extrapolated point (marked as such), the block-Schur points and the paper's reported values
    (secondary source). One paper-column panel, Okabe-Ito colours, distinct markers / lines.
    """
    df = read_timing(timing_csv)
    with figure_style():
        fig = Figure(figsize=(PANEL_W, PANEL_H + 0.4), layout="constrained")
        ax = fig.subplots()
        if "grid" in df.columns:
            _draw_grid(ax, df)
        else:
            _draw_pairs(ax, df)
        ax.set_yscale("log")
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_ylabel("projector construction (s)")
        fig.legend(loc="outside upper center", ncols=1, frameon=False)  # never over data
        return save_figure(fig, out_png, pdf)


def _draw_pairs(ax, df: pd.DataFrame) -> None:
    series = (
        ("schur_s", "block-Schur", OKABE_ITO[0], "o", "-"),
        ("dense_s", "dense SVD", OKABE_ITO[1], "s", "--"),
    )
    skipped = df.loc[df["dense_s"].isna(), "width"]
    if not skipped.empty:  # say why the dense line stops short
        series = (
            series[0],
            (
                *series[1][:1],
                f"dense SVD (skipped at width ≥ {int(skipped.min())})",
                *series[1][2:],
            ),
        )
    for column, label, color, marker, line in series:
        sub = df[["width", column]].dropna()
        sub = sub[sub[column] > 0]
        if not sub.empty:
            ax.plot(sub["width"], sub[column], marker=marker, ls=line, color=color, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(df["width"].to_list(), labels=[str(int(w)) for w in df["width"]])
    ax.set_xlabel("layer width (features in = out)")


def _draw_grid(ax, df: pd.DataFrame) -> None:
    schur = df[df["schur_s"] > 0]
    ax.plot(
        schur["d"], schur["schur_s"], marker="o", ls="-", color=OKABE_ITO[0], label="block-Schur"
    )
    measured = df[df["dense_source"] == "measured"]
    ax.plot(
        measured["d"], measured["dense_s"], marker="s", ls="none", color=OKABE_ITO[1],
        label="dense SVD, measured",
    )  # fmt: skip
    extrapolated = df[df["dense_source"] == "extrapolated"]
    fit = df[["fit_a", "fit_p"]].dropna()
    if not fit.empty and not measured.empty:
        a, p = float(fit["fit_a"].iloc[0]), float(fit["fit_p"].iloc[0])
        d = np.geomspace(measured["d"].min(), df["d"].max(), 50)
        ax.plot(d, a * d**p, ls="--", color=OKABE_ITO[1], label=rf"fit: $t \propto d^{{{p:.2f}}}$")
    if not extrapolated.empty:
        ax.plot(
            extrapolated["d"], extrapolated["dense_s"], marker="s", ls="none", mfc="white",
            color=OKABE_ITO[1], label="dense SVD, extrapolated",
        )  # fmt: skip
    rep = reported_construction()
    d_rep = rep["grid"] ** 2
    ax.plot(
        [d_rep, d_rep], [rep["dense_s"], rep["schur_s"]], marker="*", ms=7, ls="none",
        color=OKABE_ITO[2], label="paper (secondary source)",
    )  # fmt: skip
    ticks = sorted({int(d) for d in df["d"]} | {d_rep})
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels=[_grid_label(d) for d in ticks])
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("grid (d = k² points; operator d² × d²)")


def _grid_label(d: int) -> str:
    k = round(d**0.5)
    return f"{k}×{k}"
