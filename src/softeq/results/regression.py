"""The O(5) regression table: one row per noise level and model, from the datasets' summaries.

Models are named from the summary alone: a run without soft layers (``soft_layers`` 0) is the
plain ``MLP``; filter ``rpp`` is ``RPP``; ``shrink`` at b = 0 is ``EMLP (b=0)`` (the exact
equivariant MLP, EMLP's method); any other setting is ``soft <filter>`` at its b.  Values are the
mean and the sample std over seeds (docs/conventions.md §1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from softeq.results.aggregate import read_table, write_table

__all__ = ["METRICS", "model_label", "regression_table", "write_regression_table"]

PathLike = str | os.PathLike[str]

METRICS = ("mse", "rel_error", "rot_mse", "rot_rel_error", "inv_error", "inv_error_rel")
"""The metrics the table shows, each as ``<m>_mean`` and ``<m>_std``."""
_KEEP = ("dataset", "backbone", "filter", "softness", "n_seeds")


def model_label(soft_layers: float, filter: str, softness: float) -> str:
    """``MLP``, ``RPP``, ``EMLP (b=0)`` or ``soft <filter>`` (see the module docstring)."""
    if soft_layers == 0:
        return "MLP"
    if filter == "rpp":
        return "RPP"
    if filter == "shrink" and softness == 0:
        return "EMLP (b=0)"
    return f"soft {filter}"


def regression_table(summaries: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The table of the given summary tables (one per noise level), sorted by noise, model and
    b: noise, model, the run identity, n_seeds and every metric's mean and std."""
    frames = [df for df in summaries if not df.empty]
    if not frames:
        raise ValueError("no summary rows")
    df = pd.concat(frames, ignore_index=True)
    needed = ["noise_mean", "soft_layers_mean", *_KEEP, *(f"{m}_mean" for m in METRICS)]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"summary misses column(s) {missing} (not regression runs?)")
    out = pd.DataFrame({"noise": df["noise_mean"].round(4)})
    out["model"] = [
        model_label(layers, f, b)
        for layers, f, b in zip(df["soft_layers_mean"], df["filter"], df["softness"], strict=True)
    ]
    for column in _KEEP:
        out[column] = df[column]
    out = out.rename(columns={"softness": "b"})
    for metric in METRICS:
        out[f"{metric}_mean"] = df[f"{metric}_mean"]
        out[f"{metric}_std"] = df.get(f"{metric}_std")
    order = {"MLP": 0, "EMLP (b=0)": 1, "RPP": 2}
    out["_order"] = out["model"].map(lambda m: order.get(m, 3))
    out = out.sort_values(["noise", "_order", "model", "backbone", "b"], kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)


def write_regression_table(summaries: Iterable[PathLike], stem: PathLike) -> tuple[Path, Path]:
    """Read the summary CSVs and write ``{stem}.csv`` and ``{stem}.md``."""
    return write_table(regression_table(read_table(Path(p)) for p in summaries), stem)
