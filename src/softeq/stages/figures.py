"""Figure and table stages that read models or tables, never retrain: Figures 1 and 2, the
paper's tables, and the ablations (filters; projector construction time).

Each stage wires a computation (``softeq.metrics.feature_maps``, ``softeq.results``,
``softeq.timing``) to the drawing that reads its output (``softeq.figures``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

__all__ = [
    "ablation_filters",
    "construction_timing",
    "figure1",
    "figure2",
    "paper_table",
    "render_figure1",
]

PathLike = str | os.PathLike[str]


def render_figure1(
    model: nn.Module,
    image: torch.Tensor | np.ndarray | None,
    out_png: PathLike,
    group: str = "C4",
    softness: Sequence[float] | None = None,
    filter: str = "shrink",
    layer: str | None = None,
    input_size: int | None = None,
    channels: int | Sequence[int] = 4,
    title: str | None = None,
    pdf: bool = False,
) -> Path:
    """Figure 1 for a plain model: compute its numbers, then draw them; return the PNG path.

    ``image`` None uses the default photograph (the cat); ``softness`` None the default b
    values. See ``softeq.metrics.feature_maps.figure1_data`` and
    ``softeq.figures.figure1.draw_figure1``.
    """
    from softeq.figures.figure1 import draw_figure1
    from softeq.metrics.feature_maps import DEFAULT_SOFTNESS, figure1_data

    bs = DEFAULT_SOFTNESS if softness is None else softness
    data = figure1_data(model, image, group, bs, filter, layer, input_size, channels)
    return draw_figure1(data, out_png, title=title, pdf=pdf)


def figure1(args: argparse.Namespace) -> None:
    """Figure 1 for a plain classifier: the stand-in pre-trained model (--model) or hub weights."""
    import torch

    from softeq.engine.checkpoint import load_checkpoint
    from softeq.models import build_classifier
    from softeq.soften_options import split_backbone_spec

    # Figure 1 softens every kernel (no per-backbone options): the reference's Figure 1
    # notebook (notebooks/resnet_rotation.ipynb) has no kernel-size rule (docs/fidelity.md)
    if args.model:
        state = load_checkpoint(args.model)
        model_spec, _ = split_backbone_spec(state["backbone"], f"{args.model}: backbone")
        spec, model = build_classifier(model_spec, state["num_classes"], random_init=True)
        model.load_state_dict(state["model"])
    else:
        spec, model = build_classifier(split_backbone_spec(args.backbone_spec)[0], 1000)
    torch.manual_seed(0)
    softness = list(args.softness)
    render_figure1(
        model.eval(),
        None,
        args.out,
        args.group,
        softness,
        args.filter,
        input_size=spec.input_size,
        title=args.title,
    )


def figure2(args: argparse.Namespace) -> None:
    """Figure 2 (soft equivariance against RPP over b) from a summary table; never retrains."""
    from softeq.figures.figure2 import plot_figure2

    try:
        print(plot_figure2(args.summary, args.out, args.backbone, title=args.backbone))
    except (OSError, ValueError) as error:
        raise SystemExit(f"figure2: {error}") from error


def paper_table(args: argparse.Namespace) -> None:
    """Table 1, 2 or 3 in the paper's layout (CSV, Markdown, LaTeX) from summary tables."""
    from softeq.results.paper_tables import write_paper_table

    for path in write_paper_table(args.summaries, args.task, args.out_stem, args.reported):
        print(path)


def ablation_filters(args: argparse.Namespace) -> None:
    """Filters compared at equal softness (shrink / threshold / rank, hard against soft mask)."""
    from softeq.results.ablations import write_filter_ablation

    for path in write_filter_ablation(args.summary, args.out_stem):
        print(path)


def construction_timing(args: argparse.Namespace) -> None:
    """Projector construction time, block-Schur against the dense Kronecker SVD: measured
    (``softeq.timing``; ``--case pairs`` for SO(2) pair layers, ``grid`` for the paper's map on
    a k x k grid, dense extrapolated to ``--target-grid``), written as a table, then drawn."""
    from softeq.figures.timing import plot_construction_timing
    from softeq.io import atomic_write
    from softeq.results.ablations import write_construction_timing
    from softeq.timing import measure_construction_timing, measure_grid_timing

    if args.case == "grid":
        table = measure_grid_timing(
            _int_list(args.grids),
            _int_list(args.schur_grids),
            args.target_grid,
            group=args.group,
        )
    else:
        table = measure_construction_timing(_int_list(args.widths), dense_limit=args.dense_limit)
    csv = Path(f"{args.out_stem}.csv")
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    write_construction_timing(csv, args.out_stem)
    plot_construction_timing(csv, args.png)


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(",") if w.strip())
