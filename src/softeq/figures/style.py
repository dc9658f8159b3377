"""The one look of every figure: palette, sizes, matplotlib rcParams and the atomic save.

Figures are sized for a paper column (~3.5 in per panel, fonts >= 8 pt) and use the Okabe-Ito
palette (or viridis / cividis for ordered values) so they survive colour-blind readers and
greyscale print. They are plain ``Figure`` objects drawn on an Agg canvas (no pyplot: importing
a figure module neither changes the global backend nor leaks open figures), written atomically
at :data:`DPI` with no dates in the metadata, so the same tables give byte-stable files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from softeq.io import atomic_write

__all__ = [
    "DPI",
    "LINESTYLES",
    "OKABE_ITO",
    "PANEL_H",
    "PANEL_W",
    "STYLE",
    "figure_style",
    "save_figure",
]

PathLike = str | os.PathLike[str]

# Okabe & Ito (2008), ordered so the first colours stay apart in greyscale; yellow (faint) last.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
# Linestyles double the colour code so series stay apart without colour.
LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", (0, (1, 1)))
PANEL_W, PANEL_H, DPI = 3.5, 2.6, 200
STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 9,
    "figure.titlesize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "lines.linewidth": 1.4,
    "lines.markersize": 3.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable/searchable in the paper PDF
}


def figure_style(overrides: Mapping[str, Any] | None = None) -> AbstractContextManager[None]:
    """``mpl.rc_context`` with :data:`STYLE` and a figure's few deliberate ``overrides``
    (rcParams names, e.g. ``{"axes.grid": False}`` for image panels)."""
    return mpl.rc_context({**STYLE, **(overrides or {})})


def save_figure(fig: Figure, out_png: PathLike, pdf: bool = False) -> Path:
    """Save at :data:`DPI` via a temporary file + rename (a PDF beside the PNG if asked)."""
    out = Path(out_png)
    FigureCanvasAgg(fig)
    targets = [(out, "png")] + ([(out.with_suffix(".pdf"), "pdf")] if pdf else [])
    for path, fmt in targets:
        # No dates/versions in the metadata: the same tables give byte-stable figures.
        meta = {"Software": None} if fmt == "png" else {"Creator": None, "CreationDate": None}

        def write(tmp: str, fmt: str = fmt, meta: dict = meta) -> None:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=meta)

        atomic_write(path, write)
    return out
