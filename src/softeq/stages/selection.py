"""Selection stages (docs/selection.md): a halving rung's or the zero-shot decision, a selection's
summary, and the table and figure of every selection."""

from __future__ import annotations

import argparse

from softeq.io import write_json

__all__ = ["decision", "report", "summary"]


def decision(args: argparse.Namespace) -> None:
    """Rank the candidates' validation metrics: keep the best ``--keep`` (a halving rung) or
    apply the zero-shot ``--rule``."""
    from softeq.results.selection import decide

    try:
        record = decide(
            args.scores,
            args.metric,
            keep_count=args.keep,
            rule=args.rule,
            tolerance=args.tolerance,
            rung=args.rung,
            until_epoch=args.until_epoch,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from error
    write_json(record, args.out)
    kept = ", ".join(f"{b:g}" for b in record["kept"])
    print(f"{record['strategy']} rung {args.rung}: {args.metric} keeps b = {kept}")


def summary(args: argparse.Namespace) -> None:
    """A selection's record: decisions, the chosen model's test metrics, cost, full sweep."""
    from softeq.results.selection import summarize

    try:
        record = summarize(
            args.decisions, args.test, args.costs, args.epochs, args.sweep, args.sweep_costs
        )
    except ValueError as error:
        raise SystemExit(str(error)) from error
    write_json(record, args.out)
    print(f"{record['strategy']}: b = {record['chosen']:g}, test {record['test_score']:.4g}")


def report(args: argparse.Namespace) -> None:
    """The selection table and the study table (over seeds, against the full sweep; empty
    without one), as CSV and Markdown beside it, and the figure."""
    import json
    from pathlib import Path

    from softeq.figures.selection import plot_selection
    from softeq.io import atomic_write_text
    from softeq.results.aggregate import markdown_table
    from softeq.results.selection import selection_table, study_table

    summaries = []
    for path in args.summaries:
        with open(path, encoding="utf-8") as f:
            summaries.append(json.load(f))
    frames = ((selection_table(summaries), args.table), (study_table(summaries), args.study))
    for frame, path in frames:
        path = Path(path)
        atomic_write_text(path, frame.to_csv(index=False))
        atomic_write_text(path.with_suffix(".md"), markdown_table(frame) + "\n")
        print(markdown_table(frame))
    plot_selection(summaries, args.figure)
