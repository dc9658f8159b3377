"""The construction-timing figure, drawn from the timing table CSV only.

The table comes from ``softeq.timing.measure_construction_timing`` (written by the
``softeq construction-timing`` stage); this module never builds a projector.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

from softeq.figures.style import OKABE_ITO, PANEL_H, PANEL_W, figure_style, save_figure
from softeq.results.ablations import read_timing

__all__ = ["plot_construction_timing"]

PathLike = str | os.PathLike[str]


def plot_construction_timing(timing_csv: PathLike, out_png: PathLike, *, pdf: bool = False) -> Path:
    """Construction seconds against layer width, log scale, block-Schur vs dense SVD.

    Dense points that were skipped (too large) are simply missing; the dense line ends there.
    One paper-column panel, Okabe-Ito colours and distinct markers / line styles.
    """
    df = read_timing(timing_csv)
    with figure_style():
        fig = Figure(figsize=(PANEL_W, PANEL_H + 0.4), layout="constrained")
        ax = fig.subplots()
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
        ax.set_yscale("log")
        ax.set_xticks(df["width"].to_list(), labels=[str(int(w)) for w in df["width"]])
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.set_xlabel("layer width (features in = out)")
        ax.set_ylabel("projector construction (s)")
        fig.legend(loc="outside upper center", ncols=1, frameon=False)  # never over data
        return save_figure(fig, out_png, pdf)
