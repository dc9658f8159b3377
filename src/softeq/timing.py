"""Projector construction time: block-Schur against the dense Kronecker SVD (docs/method.md §3).

One measurement, used by the ``softeq construction-timing`` stage (the ablation table and figure
of the workflow) and by ``benchmarks/projectors.py``: build the equivariant projector of a
width x width pair layer (``PairRep.vectors(width)`` in and out) from an empty projector cache,
take the best of a few repeats, and check that the two constructions agree on a random weight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from softeq.groups import PairRep
from softeq.projectors import EquivariantProjector, clear_cache, equivariant_projector

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TIMING_COLUMNS",
    "max_abs_diff",
    "measure_construction_timing",
    "time_projector_build",
]

TIMING_COLUMNS = ("width", "schur_s", "dense_s", "max_abs_diff")


def time_projector_build(
    width: int,
    method: str,
    *,
    group: str = "SO2",
    softness: float = 0.5,
    filter: str = "shrink",
    repeats: int = 1,
) -> tuple[float, EquivariantProjector]:
    """Seconds (best of ``repeats``, each from an empty cache) to build one pair-layer projector
    with ``method`` (``schur`` or ``dense``), and the projector built."""
    best, projector = math.inf, None
    for _ in range(max(1, repeats)):
        clear_cache()
        rep = PairRep.vectors(int(width))
        start = time.perf_counter()
        projector = equivariant_projector(group, rep, rep, softness, filter, method=method)
        best = min(best, time.perf_counter() - start)
    clear_cache()
    return best, projector


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
    """Construction seconds per width, block-Schur and dense, as a table.

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
