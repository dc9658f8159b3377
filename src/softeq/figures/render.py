"""Render every figure of one task and dataset from its aggregated tables (no JSON, no models)."""

from __future__ import annotations

from pathlib import Path

from softeq.figures.plots import plot_bounds, plot_error_vs_angle, plot_tunability

__all__ = ["TASK_METRICS", "render_all"]

TASK_METRICS = {
    "classification": ("acc", "inv_error_rot90", "inv_error"),
    "segmentation": ("miou", "eq_error", "eq_error"),
    "trajectory": ("ade", "eq_error", "eq_error"),
}
"""Per task: the metric and the equivariance error of the tunability figure (for classification
the error under the group's 90-degree rotation, exactly zero at b = 0), and the error column of
the angle sweep."""


def render_all(tables: str | Path, prefix: str, out_dir: str | Path) -> list[Path]:
    """Write ``{prefix}_{tunability,bounds,angles}.png`` from ``{prefix}_*.csv`` in ``tables``."""
    tables, out_dir = Path(tables), Path(out_dir)
    task = prefix.split("_", 1)[0]
    if task not in TASK_METRICS:
        raise ValueError(
            f"--prefix {prefix!r}: unknown task {task!r} (known: {list(TASK_METRICS)})"
        )
    metric, error, sweep_error = TASK_METRICS[task]
    return [
        plot_tunability(
            tables / f"{prefix}_summary.csv",
            out_dir / f"{prefix}_tunability.png",
            metric=metric,
            error=error,
        ),
        plot_bounds(tables / f"{prefix}_bounds.csv", out_dir / f"{prefix}_bounds.png"),
        plot_error_vs_angle(
            tables / f"{prefix}_angles.csv", out_dir / f"{prefix}_angles.png", error=sweep_error
        ),
    ]
