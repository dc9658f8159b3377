"""The selection figure (docs/selection.md): for each model, how each strategy reached its b.

Halving: the validation score of every candidate at the end of each rung (x: the epoch of the
full schedule), a line per candidate that stops where it was dropped.  Zeroshot: the validation
score of the softened pre-trained model against b.  Seeds are drawn over one another; the chosen
b is ringed, and the title gives the choices, the regret and the compute ratio against the full
sweep when the config ran it.  Drawing only: the numbers are the selections' records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from softeq.figures.style import PANEL_H, figure_style, save_figure

__all__ = ["plot_selection"]

PathLike = str | os.PathLike[str]
MARKERS = ("o", "s", "^", "D", "v", "P")


def _color(softness: float):
    return colormaps["viridis"](0.9 * softness)


def _halving(ax, summary: dict[str, Any], marker: str) -> None:
    lines: dict[float, list[tuple[int, float]]] = {}
    for rung in summary["rungs"]:
        for entry in rung["scores"]:
            lines.setdefault(entry["softness"], []).append((rung["until_epoch"], entry["score"]))
    for b, points in sorted(lines.items()):
        x, y = zip(*points, strict=True)
        ax.plot(x, y, marker=marker, ms=4, color=_color(b), alpha=0.8, label=f"b = {b:g}")
    last = summary["rungs"][-1]
    chosen = [e for e in last["scores"] if e["softness"] == summary["chosen"]]
    for entry in chosen:
        ax.plot(last["until_epoch"], entry["score"], "o", ms=11, mfc="none", mec="black")
    ends = [rung["until_epoch"] for rung in summary["rungs"]]
    ax.set_xscale("log")
    ax.set_xticks(ends, [str(e) for e in ends])
    ax.minorticks_off()
    ax.set_xlabel("epoch of the full schedule (rung ends)")


def _zeroshot(ax, summary: dict[str, Any], marker: str) -> None:
    scores = summary["rungs"][0]["scores"]
    b = [e["softness"] for e in scores]
    y = [e["score"] for e in scores]
    ax.plot(b, y, color="0.6", lw=1, zorder=1)
    ax.scatter(b, y, c=[_color(v) for v in b], marker=marker, zorder=2)
    ax.plot(summary["chosen"], y[b.index(summary["chosen"])], "o", ms=11, mfc="none", mec="black")
    ax.set_xlabel("b (no training)")


def _title(summaries: Sequence[dict[str, Any]]) -> str:
    chosen = ", ".join(f"{s['chosen']:g}" for s in summaries)
    text = f"{summaries[0]['strategy']}: b = {chosen}"
    epochs = np.mean([s["sweep_epochs"] / s["epochs"] for s in summaries])
    text += f"\nsweep / strategy: {epochs:.1f}x epochs"
    sweeps = [s["sweep"] for s in summaries if s.get("sweep")]
    if sweeps:
        ratios = [s["compute_ratio"] for s in sweeps if math.isfinite(s["compute_ratio"])]
        text += f", {np.mean(ratios):.1f}x wall s" if ratios else ""
        text += f"; regret {np.mean([s['regret'] for s in sweeps]):.3g}"
    return text


def plot_selection(summaries: Sequence[dict[str, Any]], out_png: PathLike) -> Path:
    """Draw every selection (records of :func:`softeq.results.selection.summarize`)."""
    if not summaries:
        raise ValueError("no selections to draw")
    models = sorted({(s["task"], s["dataset"], s["backbone"], s["group"]) for s in summaries})
    strategies = sorted({s["strategy"] for s in summaries})
    with figure_style():
        fig = Figure(
            figsize=(3.6 * len(strategies) + 1.2, (PANEL_H + 0.5) * len(models)),
            layout="constrained",
        )
        axes = np.asarray(fig.subplots(len(models), len(strategies), squeeze=False))
        for i, model in enumerate(models):
            for j, strategy in enumerate(strategies):
                ax = axes[i, j]
                group = [
                    s
                    for s in summaries
                    if (s["task"], s["dataset"], s["backbone"], s["group"]) == model
                    and s["strategy"] == strategy
                ]
                if not group:
                    ax.set_axis_off()
                    continue
                group.sort(key=lambda s: s["seed"])
                for k, summary in enumerate(group):
                    draw = _halving if strategy == "halving" else _zeroshot
                    draw(ax, summary, MARKERS[k % len(MARKERS)])
                ax.set_title(_title(group), fontsize="small")
                ax.set_ylabel(f"{model[1]} {model[2]}\nval {group[0]['metric']}")
        handles, labels = [], []
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
        if handles:
            order = sorted(range(len(labels)), key=labels.__getitem__)
            fig.legend(
                [handles[k] for k in order],
                [labels[k] for k in order],
                loc="outside right center",
                frameon=False,
            )
        return save_figure(fig, out_png)
