"""Projector construction time: block-Schur against the dense Kronecker SVD (docs/method.md §3).

Two cases, both used by the ``softeq construction-timing`` stage (the ablation table and figure
of the workflow) and by ``benchmarks/projectors.py``; each builds the projector from an empty
projector cache, takes the best of a few repeats, and checks that the two constructions agree
on a random weight where both run.

- ``pairs``: an SO(2) pair layer of width w (``PairRep.vectors(w)`` in and out).
- ``grid``: the paper's case (Table 6): an equivariant map from functions on a k x k grid to
  functions on the same grid, W of d x d with d = k^2, under the grid rotation generator of C4
  (the exact 90-degree permutation, normal, so block-Schur applies). Its constraint operator
  is d^2 x d^2: 38,416 x 38,416 at 14 x 14, whose dense SVD (O(d^6)) cannot run here, so the
  dense construction is measured on small grids, fitted as ``t = a d^p`` (log-log) and
  extrapolated to ``target_grid``; block-Schur is measured at every grid up to the target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from softeq.groups import PairRep, grid_generators
from softeq.projectors import EquivariantProjector, clear_cache, equivariant_projector
from softeq.results.ablations import GRID_TIMING_COLUMNS, fit_power_law

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "REPEAT_BUDGET_S",
    "TIMING_CASES",
    "TIMING_COLUMNS",
    "max_abs_diff",
    "measure_construction_timing",
    "measure_grid_timing",
    "time_grid_projector_build",
    "time_projector_build",
]

TIMING_CASES = ("pairs", "grid")
TIMING_COLUMNS = ("width", "schur_s", "dense_s", "max_abs_diff")


# Repeats stop once one build took this long: best-of-n steadies the cheap timings (the noisy
# ones), while an expensive dense SVD runs once.
REPEAT_BUDGET_S = 2.0


def _best_build(build: Callable[[], EquivariantProjector], repeats: int):
    best, projector = math.inf, None
    for _ in range(max(1, repeats)):
        clear_cache()
        start = time.perf_counter()
        projector = build()
        best = min(best, time.perf_counter() - start)
        if best > REPEAT_BUDGET_S:
            break
    clear_cache()
    return best, projector


def time_projector_build(
    width: int,
    method: str,
    *,
    group: str = "SO2",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 1,
) -> tuple[float, EquivariantProjector]:
    """Seconds (best of ``repeats``, each from an empty cache; one run once a build takes over
    ``REPEAT_BUDGET_S``) to build one pair-layer projector with ``method`` (``schur`` or
    ``dense``), and the projector built."""
    rep = PairRep.vectors(int(width))
    return _best_build(
        lambda: equivariant_projector(group, rep, rep, softness, filter, method=method), repeats
    )


def time_grid_projector_build(
    grid: int,
    method: str,
    *,
    group: str = "C4",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 1,
) -> tuple[float, EquivariantProjector]:
    """Seconds (best of ``repeats``, as :func:`time_projector_build`) to build the projector of
    an equivariant map between functions on a ``grid`` x ``grid`` grid, and the projector built.

    The generator is ``grid_generators(group, grid)`` (for C4 the exact rotation permutation);
    the generator matrices are formed before the clock starts.
    """
    gens = grid_generators(group, int(grid))
    return _best_build(
        lambda: equivariant_projector(group, gens, gens, softness, filter, method=method), repeats
    )


def max_abs_diff(
    first: EquivariantProjector, second: EquivariantProjector, width: int, seed: int | None = None
) -> float:
    """Largest disagreement of two projectors applied to one random (width x width) weight."""
    generator = torch.Generator().manual_seed(int(width if seed is None else seed))
    weight = torch.randn(width, width, dtype=torch.float64, generator=generator)
    return float((first.apply(weight) - second.apply(weight)).abs().max())


def measure_construction_timing(
    widths: Sequence[int] = (8, 16, 32),
    dense_limit: int = 32,
    *,
    group: str = "SO2",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 1,
) -> pd.DataFrame:
    """Construction seconds per width, block-Schur and dense, as a table (the ``pairs`` case).

    Widths are even numbers; the dense construction (its cost grows as w^6) is timed only up to
    ``dense_limit`` (NaN beyond). Columns: ``width, schur_s, dense_s, max_abs_diff`` (the two
    constructions' disagreement on a random weight). Needs pandas (the ``workflow`` extra).
    """
    import pandas as pd

    kwargs = {"group": group, "softness": softness, "filter": filter, "repeats": repeats}
    rows = []
    for width in (int(w) for w in widths):
        schur_s, schur = time_projector_build(width, "schur", **kwargs)
        dense_s, diff = math.nan, math.nan
        if width <= dense_limit:
            dense_s, dense = time_projector_build(width, "dense", **kwargs)
            diff = max_abs_diff(schur, dense, width)
        rows.append({"width": width, "schur_s": schur_s, "dense_s": dense_s, "max_abs_diff": diff})
    return pd.DataFrame(rows, columns=list(TIMING_COLUMNS))


def measure_grid_timing(
    grids: Sequence[int] = (4, 5, 6),
    schur_grids: Sequence[int] = (4, 8, 14),
    target_grid: int = 14,
    *,
    group: str = "C4",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 3,
) -> pd.DataFrame:
    """Construction seconds of the paper's grid case, measured and extrapolated, as a table.

    The dense construction is measured at ``grids``, block-Schur at ``grids``, ``schur_grids``
    and ``target_grid``; the measured dense times are fitted as ``t = a d^p`` (d = k^2 grid
    points) and, unless measured there, the dense time at ``target_grid`` is the fit's value
    (``dense_source`` ``extrapolated``). One row per grid, columns ``GRID_TIMING_COLUMNS``;
    ``fit_a`` / ``fit_p`` repeat the fit on every row. Needs pandas (the ``workflow`` extra).
    """
    import pandas as pd

    dense_grids = sorted({int(k) for k in grids})
    if len(dense_grids) < 2:
        raise ValueError(f"the fit needs dense timings at two or more grids, got {dense_grids}")
    kwargs = {"group": group, "softness": softness, "filter": filter, "repeats": repeats}
    rows = {}
    for k in sorted({*dense_grids, *(int(k) for k in schur_grids), int(target_grid)}):
        schur_s, schur = time_grid_projector_build(k, "schur", **kwargs)
        row = {"grid": k, "d": k * k, "operator": k**4, "schur_s": schur_s}
        row.update(dense_s=math.nan, dense_source="", max_abs_diff=math.nan)
        if k in dense_grids:
            dense_s, dense = time_grid_projector_build(k, "dense", **kwargs)
            diff = max_abs_diff(schur, dense, k * k)
            row.update(dense_s=dense_s, dense_source="measured", max_abs_diff=diff)
        rows[k] = row
    measured = [rows[k] for k in dense_grids]
    a, p = fit_power_law([r["d"] for r in measured], [r["dense_s"] for r in measured])
    target = rows[int(target_grid)]
    if target["dense_source"] != "measured":
        target.update(dense_s=a * target["d"] ** p, dense_source="extrapolated")
    table = pd.DataFrame(list(rows.values()))
    table["case"], table["group"], table["fit_a"], table["fit_p"] = "grid", group, a, p
    return table[list(GRID_TIMING_COLUMNS)]
