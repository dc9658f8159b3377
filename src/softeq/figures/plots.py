"""The paper's figures, drawn from the aggregated CSV tables only (never the evaluation JSONs).

Reading only ``softeq.results.aggregate``'s tables keeps figures cheap: restyling a plot reruns
in seconds without touching a model. Sizes, palette, rcParams and the atomic save come from
``softeq.figures.style`` (PNG, plus a PDF on request).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, MultipleLocator

from softeq.figures.style import (
    LINESTYLES,
    OKABE_ITO,
    PANEL_H,
    PANEL_W,
    figure_style,
    save_figure,
)
from softeq.results.aggregate import read_table

__all__ = [
    "END_MARK",
    "mark_softness_ends",
    "plot_bounds",
    "plot_error_vs_angle",
    "plot_tunability",
]

PathLike = str | os.PathLike[str]

# Columns that may distinguish otherwise identical series; used only when they vary in a table.
_FACETS = ("task", "dataset", "group", "filter")
_BAND_ALPHA = 0.18
# b=0 / b=1 points: larger, black-edged, square / diamond, so the anchors read without colour.
END_MARK = {
    "linestyle": "none",
    "markersize": 6,
    "markeredgecolor": "black",
    "mew": 0.7,
    "zorder": 3,
}
_BOUND_STYLE = {"linestyle": "--", "linewidth": 1.1}

# Axis labels per metric; (task, metric) overrides where the unit depends on the task.
_LABELS = {
    "acc": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "rot_acc": "rotated top-1 accuracy (%)",
    "rot_top5": "rotated top-5 accuracy (%)",
    "combined": "combined score (%)",
    "miou": "mIoU (%)",
    "rot_miou": "rotated mIoU (%)",
    "inv_error": "invariance error (KL, nats)",
    "inv_error_rot90": "invariance error at 90° (KL, nats)",
    "eq_error": "equivariance error",
    "ade": "ADE (m)",
    "fde": "FDE (m)",
    "ade_sum": "ADE summed over steps (m)",
    "rot_ade": "rotated ADE (m)",
    "rot_fde": "rotated FDE (m)",
    "combined_ade": "combined ADE (m)",
    "combined_fde": "combined FDE (m)",
}
_TASK_LABELS = {
    ("classification", "combined"): "combined accuracy (%)",
    ("segmentation", "combined"): "combined mIoU (%)",
    ("segmentation", "eq_error"): "equivariance error (KL, nats)",
    ("trajectory", "eq_error"): "equivariance error (m)",
    ("trajectories", "eq_error"): "equivariance error (m)",
}
# Stored as fractions in [0, 1], shown in percent.
_PERCENT = frozenset({"acc", "top5", "rot_acc", "rot_top5", "combined", "miou", "rot_miou"})


# ---------------------------------------------------------------------------------------- helpers


def _load(csv: PathLike, required: Iterable[str]) -> pd.DataFrame:
    """Read an aggregated table; a missing column or an empty table is a ValueError naming it."""
    path = Path(csv)
    df = read_table(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing required column(s) {missing}; has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{path}: table has no rows")
    return df


def _task(df: pd.DataFrame) -> str | None:
    tasks = df["task"].unique() if "task" in df.columns else []
    return str(tasks[0]) if len(tasks) == 1 else None


def _label(metric: str, task: str | None) -> str:
    return _TASK_LABELS.get((task or "", metric), _LABELS.get(metric, metric.replace("_", " ")))


def _scale(metric: str, values: pd.Series) -> float:
    """100 for fractions shown in percent; 1 if the table already holds percentages."""
    finite = values.abs().dropna()
    return 100.0 if metric in _PERCENT and (finite.empty or finite.max() <= 1.0) else 1.0


def _varying(df: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c in df.columns and df[c].nunique(dropna=False) > 1]


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def _series_name(keys: Sequence[str], values: Sequence[object]) -> str:
    parts = []
    for key, value in zip(keys, values, strict=True):
        if key == "softness_pos":
            parts.append(f"$b_{{pos}}$={_fmt(value)}")
        elif key == "softness":
            parts.append(f"b={_fmt(value)}")
        else:
            parts.append(_fmt(value))
    return ", ".join(parts)


def _groups(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple[tuple, pd.DataFrame]]:
    if not keys:
        return [((), df)]
    return [
        (key if isinstance(key, tuple) else (key,), sub)
        for key, sub in df.groupby(list(keys), dropna=False, sort=True)
    ]


def _style(i: int) -> dict[str, object]:
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def _softness_colors(values: Sequence[float]) -> dict[float, tuple]:
    """Ordered softness -> ordered colours (viridis, yellow end cut: too faint on white)."""
    cmap = mpl.colormaps["viridis"]
    n = len(values)
    return {v: cmap(0.85 * i / max(n - 1, 1)) for i, v in enumerate(sorted(values))}


def _legend_ncols(labels: Sequence[str], width_in: float) -> int:
    """As many legend columns as fit the figure width (legends outside the axes are not shrunk)."""
    entry = 0.6 + 0.065 * max(len(label) for label in labels)  # handle + text at 8 pt, inches
    return max(1, min(len(labels), int(width_in // entry)))


def _varies_within(df: pd.DataFrame, keys: Sequence[str], column: str) -> bool:
    """Whether ``column`` takes several values for one value of ``keys`` (seeds aside)."""
    if column not in df.columns:
        return False
    return bool((df.groupby(list(keys), dropna=False)[column].nunique(dropna=False) > 1).any())


def _depth_colors(n: int) -> list[tuple]:
    """n colours ordered by depth (viridis, yellow end cut: too faint on white)."""
    cmap = mpl.colormaps["viridis"]
    return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


def mark_softness_ends(ax: Axes, labels: tuple[str, str] = ("strict", "plain")) -> None:
    """Dotted verticals at b=0 and b=1, named on a top axis (never on data)."""
    for x in (0.0, 1.0):
        ax.axvline(x, color="0.45", linestyle=":", linewidth=0.9, zorder=0)
    ax.set_xlim(-0.06, 1.06)
    top = ax.secondary_xaxis("top")
    top.set_xticks([0.0, 1.0], labels=list(labels))
    top.tick_params(length=0, pad=2, labelsize=8, labelcolor="0.3")
    top.spines["top"].set_visible(False)


def _panel_grid(fig: Figure, n: int, ncols: int, **kwargs: object) -> list[Axes]:
    nrows = math.ceil(n / ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, **kwargs)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


# ----------------------------------------------------------------------------------- tunability


def plot_tunability(
    summary_csv: PathLike,
    out_png: PathLike,
    metric: str = "acc",
    error: str = "inv_error",
    *,
    pdf: bool = False,
) -> Path:
    """Task metric and equivariance error against softness b, mean ± std over seeds.

    The paper's central claim is a trade-off curve, so both sides share the x axis (softness b);
    b=0 (strictly equivariant) and b=1 (the plain model) are the two anchors and are marked with
    their own markers and labelled dotted lines. A third, narrower panel shows the combined score
    (``combined_{metric}`` or ``combined``) when the summary has it. One line per backbone, split
    further by task/dataset/group/filter/softness_pos only where those vary in the table.
    """
    columns = [f"{c}_{s}" for c in (metric, error) for s in ("mean", "std")]
    df = _load(summary_csv, ["backbone", "softness", *columns])
    combined = next(
        (
            c
            for c in (f"combined_{metric}", "combined")
            if c not in (metric, error) and f"{c}_mean" in df.columns
        ),
        None,
    )
    panels = [metric, error] + ([combined] if combined else [])
    keys = ["backbone", *_varying(df, _FACETS)]
    if _varies_within(df, [*keys, "softness"], "softness_pos"):
        keys.append("softness_pos")
    task = _task(df)

    ratios = [1.0, 1.0, 0.75][: len(panels)]
    with figure_style():
        fig = Figure(figsize=(PANEL_W * sum(ratios), PANEL_H + 0.45), layout="constrained")
        axes = fig.subplots(1, len(panels), gridspec_kw={"width_ratios": ratios})
        handles = []
        for i, (values, sub) in enumerate(_groups(df, keys)):
            cols = [f"{p}_{s}" for p in panels for s in ("mean", "std")]
            sub = sub.groupby("softness", sort=True)[cols].mean().reset_index()
            style = _style(i)
            for ax, panel in zip(axes, panels, strict=True):
                scale = _scale(panel, df[f"{panel}_mean"])
                x = sub["softness"].to_numpy()
                y = sub[f"{panel}_mean"].to_numpy() * scale
                s = np.nan_to_num(sub[f"{panel}_std"].to_numpy()) * scale
                ax.fill_between(x, y - s, y + s, color=style["color"], alpha=_BAND_ALPHA, lw=0)
                ax.plot(x, y, marker="o", **style)
                for end, marker in ((0.0, "s"), (1.0, "D")):
                    at = np.isclose(x, end)
                    ax.plot(x[at], y[at], marker=marker, mfc=style["color"], **END_MARK)
            handles.append(Line2D([], [], marker="o", label=_series_name(keys, values), **style))
        for ax, panel in zip(axes, panels, strict=True):
            ax.set_xlabel("softness b")
            ax.set_ylabel(_label(panel, task))
            mark_softness_ends(ax)
        axes[1].set_ylim(bottom=min(0.0, axes[1].get_ylim()[0]))
        marks = [
            Line2D([], [], marker="s", mfc="0.7", label="b=0 strict", **END_MARK),
            Line2D([], [], marker="D", mfc="0.7", label="b=1 plain", **END_MARK),
        ]
        entries = handles + marks
        ncols = _legend_ncols([h.get_label() for h in entries], fig.get_figwidth())
        fig.legend(handles=entries, loc="outside upper center", ncols=ncols, frameon=False)
        return save_figure(fig, out_png, pdf)


# ---------------------------------------------------------------------------------------- bounds


def plot_bounds(bounds_csv: PathLike, out_png: PathLike, *, pdf: bool = False) -> Path:
    """Measured per-layer residual ||C vec(W_b)|| / ||W|| against the layer's b, with its bound.

    docs/method.md §6: every soft layer satisfies measured <= b_eff * sigma_max; drawing the bound
    (dashed) in the layer's colour beside the measurement (solid, mean ± std over seeds) shows
    the guarantee and its slack at a glance. One panel per backbone (and group/filter if they
    vary). Up to 8 layers get Okabe-Ito colours and a legend; deeper networks get viridis by
    depth and a colour bar instead of an unreadable legend.
    """
    df = _load(bounds_csv, ["backbone", "layer", "b", "measured", "bound"])
    facet_keys = ["backbone", *_varying(df, _FACETS)]
    facets = _groups(df, facet_keys)
    ncols = min(len(facets), 3)
    with figure_style():
        nrows = math.ceil(len(facets) / ncols)
        fig = Figure(figsize=(PANEL_W * ncols, (PANEL_H + 0.9) * nrows + 0.3), layout="constrained")
        axes = _panel_grid(fig, len(facets), ncols)
        for ax, (values, sub) in zip(axes, facets, strict=True):
            layers = list(pd.unique(sub["layer"]))  # table order = network order, input first
            many = len(layers) > len(OKABE_ITO)
            palette = _depth_colors(len(layers)) if many else OKABE_ITO
            for i, layer in enumerate(layers):
                rows = sub[sub["layer"] == layer].groupby("b", sort=True)
                m = rows["measured"].agg(["mean", "std"]).fillna(0.0)
                bound = rows["bound"].mean()
                x = m.index.to_numpy(dtype=float)
                color = palette[i]
                mean, std = m["mean"].to_numpy(), m["std"].to_numpy()
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=_BAND_ALPHA, lw=0)
                ax.plot(x, mean, color=color, marker="o", label=None if many else layer)
                # A layer at one b only (pos_embed at a fixed b_pos) has no line: mark it by a dash.
                single = {"marker": "_", "markersize": 10} if len(bound) == 1 else {}
                ax.plot(bound.index, bound.to_numpy(), color=color, **_BOUND_STYLE, **single)
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(bottom=0.0)
            ax.set_xlabel("softness b of the layer")
            ax.set_ylabel(r"$\|C\,\mathrm{vec}(W_b)\|\;/\;\|W\|$")
            ax.set_title(_series_name(facet_keys, values))
            if many:
                # The bar shows exactly the colours drawn: one block per layer, index 0 = input.
                cmap = mpl.colors.ListedColormap(palette)
                norm = mpl.colors.Normalize(-0.5, len(layers) - 0.5)
                bar = fig.colorbar(mpl.cm.ScalarMappable(norm, cmap), ax=ax, shrink=0.9)
                bar.set_label("soft layer index (input → output)")
                bar.locator = MaxNLocator(integer=True)
                bar.update_ticks()
            else:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, ncols=1)
        kinds = [
            Line2D([], [], color="0.3", marker="o", label="measured (mean ± std over seeds)"),
            Line2D(
                [],
                [],
                color="0.3",
                label=r"bound $b_{\mathrm{eff}}\,\sigma_{\max}$",
                **_BOUND_STYLE,
            ),
        ]
        fig.legend(handles=kinds, loc="outside upper center", ncols=2, frameon=False)
        return save_figure(fig, out_png, pdf)


# ----------------------------------------------------------------------------------------- angles


def plot_error_vs_angle(
    angles_csv: PathLike,
    out_png: PathLike,
    error: str | None = None,
    *,
    pdf: bool = False,
) -> Path:
    """Equivariance error against rotation angle, one line per softness, one panel per backbone.

    ``error`` defaults to ``inv_error`` (classification) or ``eq_error`` (other tasks). Softness is
    ordered, so its colours are too (viridis, shared by all panels); panels share the y axis so
    backbones compare directly. Mean ± std over seeds.
    """
    path = Path(angles_csv)
    if error is None:
        header = read_table(path).columns
        error = next((c for c in ("inv_error", "eq_error") if c in header), "inv_error")
    df = _load(path, ["backbone", "softness", "angle", error])
    facet_keys = ["backbone", *_varying(df, _FACETS)]
    facets = _groups(df, facet_keys)
    series = ["softness"]
    if _varies_within(df, [*facet_keys, "softness"], "softness_pos"):
        series.append("softness_pos")
    colors = _softness_colors(list(df["softness"].unique()))
    ncols = min(len(facets), 3)
    task = _task(df)
    with figure_style():
        nrows = math.ceil(len(facets) / ncols)
        fig = Figure(figsize=(PANEL_W * ncols, PANEL_H * nrows + 0.45), layout="constrained")
        axes = _panel_grid(fig, len(facets), ncols, sharey=True)
        handles: dict[str, Line2D] = {}
        span = df["angle"].max() - df["angle"].min()
        step = 90 if span >= 270 else 45 if span >= 120 else 15 if span >= 30 else None
        for ax, (values, sub) in zip(axes, facets, strict=True):
            for j, (key, rows) in enumerate(_groups(sub, series)):
                stats = rows.groupby("angle", sort=True)[error].agg(["mean", "std"])
                x = stats.index.to_numpy(dtype=float)
                mean, std = stats["mean"].to_numpy(), np.nan_to_num(stats["std"].to_numpy())
                color = colors[key[0]]
                linestyle = LINESTYLES[j % len(LINESTYLES)] if len(series) > 1 else "-"
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=_BAND_ALPHA, lw=0)
                (line,) = ax.plot(x, mean, color=color, linestyle=linestyle, marker="o", ms=2.5)
                name = _series_name(series, key)
                name += " (strict)" if key[0] == 0 else " (plain)" if key[0] == 1 else ""
                handles.setdefault(name, line)
            ax.set_xlabel("rotation angle (degrees)")
            if step:
                ax.xaxis.set_major_locator(MultipleLocator(step))
            ax.set_title(_series_name(facet_keys, values))
        for ax in axes[::ncols]:
            ax.set_ylabel(_label(error, task))
        axes[0].set_ylim(bottom=min(0.0, axes[0].get_ylim()[0]))
        fig.legend(
            handles=list(handles.values()),
            labels=list(handles),
            loc="outside upper center",
            ncols=_legend_ncols(list(handles), fig.get_figwidth()),
            frameon=False,
        )
        return save_figure(fig, out_png, pdf)
