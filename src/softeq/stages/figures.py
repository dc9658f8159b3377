"""Figure and table stages that read models or tables, never retrain: Figure 1, the paper's
tables, and the ablations (filters; projector construction time)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["ablation_filters", "construction_timing", "figure1", "paper_table"]


def figure1(args: argparse.Namespace) -> None:
    """Figure 1 for a plain classifier: the stand-in pre-trained model (--model) or hub weights."""
    import torch

    from softeq.engine.checkpoint import load_checkpoint
    from softeq.figures.figure1 import render_figure1
    from softeq.models import build_classifier

    if args.model:
        state = load_checkpoint(args.model)
        spec, model = build_classifier(state["backbone"], state["num_classes"], random_init=True)
        model.load_state_dict(state["model"])
    else:
        spec, model = build_classifier(args.backbone_spec, 1000)
    torch.manual_seed(0)
    softness = [float(b) for b in args.softness.split(",")]
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


def paper_table(args: argparse.Namespace) -> None:
    """Table 1, 2 or 3 in the paper's layout (CSV, Markdown, LaTeX) from summary tables."""
    from softeq.figures.paper_tables import write_paper_table

    for path in write_paper_table(args.summaries, args.task, args.out_stem, args.reported):
        print(path)


def ablation_filters(args: argparse.Namespace) -> None:
    """Filters compared at equal softness (shrink / threshold / rank, hard against soft mask)."""
    from softeq.figures.paper_tables import write_filter_ablation

    for path in write_filter_ablation(args.summary, args.out_stem):
        print(path)


def construction_timing(args: argparse.Namespace) -> None:
    """Projector construction time, block-Schur against the dense Kronecker SVD: measured here,
    then written as a table and a figure."""
    from softeq.figures.paper_tables import (
        measure_construction_timing,
        plot_construction_timing,
        write_construction_timing,
    )
    from softeq.io import atomic_write

    widths = tuple(int(w) for w in args.widths.split(","))
    table = measure_construction_timing(widths, dense_limit=args.dense_limit)
    csv = Path(f"{args.out_stem}.csv")
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    write_construction_timing(csv, args.out_stem)
    plot_construction_timing(csv, args.png)
