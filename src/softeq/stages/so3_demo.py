"""The SO(3) demo: an SO(3)-equivariant MLP on 3-D vectors softened at a sweep of b, and the
distribution of its equivariance error ||f(Rx) - R f(x)|| over random inputs and rotations.

The reference's SO(3) notebook draws the same statistic for random (untrained) soft layers
(docs/fidelity.md, "SO(3) demo").  Here the model is ``softeq.models.rep_mlp.RepMLP`` from
``vectors * V`` to ``V`` with random weights; for each random initialisation, every b softens a
copy of the same plain model, and every b sees the same inputs x (unit vectors, uniform on the
sphere) and rotations R (``MatrixGroup.sample``): the boxes differ only by b.  The computation
writes one CSV row per (b, model, sample); ``softeq figure-so3`` draws from that table alone.
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SO3_COLUMNS",
    "SO3DemoSettings",
    "figure_so3",
    "plain_so3_model",
    "so3_demo",
    "so3_demo_inputs",
    "so3_demo_table",
    "so3_reps",
    "write_so3_demo",
]

PathLike = str | os.PathLike[str]

SO3_COLUMNS = ("b", "model", "sample", "error", "output_norm")
"""The demo table: softness, initialisation, sample index, ||f(Rx) - R f(x)||, ||f(x)||."""

DEFAULT_SOFTNESS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class SO3DemoSettings:
    """One demo: model size, the b sweep, how many samples and initialisations, the seed.

    ``vectors`` 5 and random weights follow the reference's notebook (``depth`` 0, one linear map,
    is its model); errors name the key (``so3_demo.hidden: must be >= 1, got 0``).
    """

    hidden: int = 16
    depth: int = 2
    softness: tuple[float, ...] = DEFAULT_SOFTNESS
    samples: int = 500
    seed: int = 0
    vectors: int = 5
    models: int = 4
    filter: str = "shrink"

    def __post_init__(self) -> None:
        self.check()

    def check(self, where: str = "so3_demo") -> None:
        """Raise ``ValueError`` naming the key of the first invalid setting."""
        from softeq.filters import FILTERS, check_softness

        for name, low in (("hidden", 1), ("depth", 0), ("samples", 1), ("vectors", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{where}.{name}: must be an integer >= {low}, got {value!r}")
        if isinstance(self.models, bool) or not isinstance(self.models, int) or self.models < 1:
            raise ValueError(f"{where}.models: must be an integer >= 1, got {self.models!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{where}.seed: must be an integer >= 0, got {self.seed!r}")
        if not self.softness:
            raise ValueError(f"{where}.softness: give at least one b")
        for j, b in enumerate(self.softness):
            try:
                check_softness(float(b))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{where}.softness[{j}]: {error}") from error
        if self.filter not in FILTERS:
            raise ValueError(f"{where}.filter: {self.filter!r} is not one of {FILTERS}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], where: str = "so3_demo") -> SO3DemoSettings:
        """Settings from a config mapping; unknown keys and bad values raise naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key (known: {sorted(known)})")
        values = dict(settings)
        if "softness" in values:
            values["softness"] = tuple(values["softness"])
        try:
            return cls(**values)
        except ValueError as error:
            text = str(error)
            raise ValueError(text.replace("so3_demo.", f"{where}.", 1)) from error

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the softness as a list)."""
        return {**asdict(self), "softness": list(self.softness)}


def so3_reps(vectors: int = 5) -> tuple[Any, Any, Any]:
    """SO(3) and the demo's representations: ``vectors * V`` in, ``V`` out."""
    from softeq.matrix_groups import matrix_group
    from softeq.reps import parse_rep

    group = matrix_group("SO3")
    return group, parse_rep(f"{vectors}V" if vectors > 1 else "V", group), parse_rep("V", group)


def plain_so3_model(settings: SO3DemoSettings, index: int = 0):
    """The ``index``-th random initialisation of the plain (unsoftened) model, in float64."""
    import torch

    from softeq.models.rep_mlp import RepMLP

    group, in_rep, out_rep = so3_reps(settings.vectors)
    torch.manual_seed(settings.seed * 1009 + index)
    model = RepMLP(group, in_rep, out_rep, settings.hidden, settings.depth)
    return model.double().eval()


def so3_demo_inputs(settings: SO3DemoSettings, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The inputs x (samples, 3 * vectors; unit vectors) and rotations R (samples, 3, 3) the
    ``index``-th initialisation is measured on, the same for every b."""
    from softeq.metrics.rep_equivariance import unit_vectors

    group = so3_reps(settings.vectors)[0]
    rng = np.random.default_rng([settings.seed, index])
    x = unit_vectors(rng, settings.samples, settings.vectors, group.n)
    return x, np.stack([group.sample(rng) for _ in range(settings.samples)])


def so3_demo_table(settings: SO3DemoSettings) -> pd.DataFrame:
    """Per-sample errors ||f_b(Rx) - R f_b(x)|| (and ||f_b(x)||) for every b and initialisation.

    The error is not normalised (the reference's statistic); ``output_norm`` lets a reader divide.
    """
    from softeq.metrics.rep_equivariance import rep_equivariance_errors
    from softeq.soften import soften

    _, in_rep, out_rep = so3_reps(settings.vectors)
    frames = []
    for index in range(settings.models):
        plain = plain_so3_model(settings, index)
        x, rotations = so3_demo_inputs(settings, index)
        for b in settings.softness:
            model = soften(copy.deepcopy(plain), "SO3", float(b), filter=settings.filter)
            error, norm = rep_equivariance_errors(model.eval(), in_rep, out_rep, x, rotations)
            frames.append(
                pd.DataFrame(
                    {
                        "b": float(b),
                        "model": index,
                        "sample": np.arange(settings.samples),
                        "error": error,
                        "output_norm": norm,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[list(SO3_COLUMNS)]


def write_so3_demo(settings: SO3DemoSettings, out_csv: PathLike) -> Path:
    """Compute the demo's table and write it atomically as CSV; return its path."""
    from softeq.io import atomic_write

    table = so3_demo_table(settings)
    return atomic_write(out_csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.9g"))


def _softness(values: Sequence[float] | str) -> tuple[float, ...]:
    if isinstance(values, str):
        values = [float(v) for v in values.split(",") if v.strip()]
    return tuple(float(v) for v in values)


def so3_demo(args: argparse.Namespace) -> None:
    """``softeq so3-demo``: the demo's per-sample error table (CSV)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = SO3DemoSettings(
            hidden=args.hidden,
            depth=args.depth,
            softness=_softness(args.softness),
            samples=args.samples,
            seed=args.seed,
            vectors=args.vectors,
            models=args.models,
            filter=args.filter,
        )
    except ValueError as error:
        raise SystemExit(f"so3-demo: {error}") from error
    print(write_so3_demo(settings, args.out))


def figure_so3(args: argparse.Namespace) -> None:
    """``softeq figure-so3``: the box plots of the demo's table (never recomputes)."""
    from softeq.figures.so3_demo import plot_so3_demo

    try:
        print(plot_so3_demo(args.table, args.out))
    except (OSError, ValueError) as error:
        raise SystemExit(f"figure-so3: {error}") from error
