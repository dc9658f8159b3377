"""The record of a softness selection and its table (docs/selection.md).

``decide`` turns the candidates' validation metrics into a decision (a halving rung's survivors,
or the zero-shot choice); ``summarize`` gathers a selection's decisions, the chosen model's test
metrics and its cost, read from Snakemake's benchmark files (wall seconds of every job it ran),
beside the full sweep of the same candidates when the config runs it: the regret and the compute
ratio; ``selection_table`` is one row per selection.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from softeq.selection import keep, lower_is_better, zeroshot_choice

__all__ = [
    "benchmark_seconds",
    "decide",
    "read_metrics",
    "selection_table",
    "study_table",
    "summarize",
    "trained_epochs",
]

PathLike = str | Path


def read_metrics(path: PathLike) -> dict[str, Any]:
    """A metrics JSON of ``softeq evaluate``; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the metrics ({error})") from error
    if not isinstance(record, dict) or "metrics" not in record or "softness" not in record:
        raise ValueError(f"{path}: not a metrics JSON of softeq evaluate (no metrics / softness)")
    return record


def _score(record: dict[str, Any], metric: str, path: PathLike) -> float:
    if metric not in record["metrics"]:
        known = ", ".join(sorted(record["metrics"]))
        raise ValueError(f"{path}: no metric {metric!r} (it has {known})")
    return float(record["metrics"][metric])


def decide(
    paths: Sequence[PathLike],
    metric: str,
    keep_count: int | None = None,
    rule: str = "best",
    tolerance: float = 0.0,
    rung: int = 0,
    until_epoch: int = 0,
) -> dict[str, Any]:
    """The decision on the candidates whose validation metrics are in ``paths``: the best
    ``keep_count`` (halving rung ``rung``, which ended at epoch ``until_epoch`` of the full
    schedule), or the zero-shot ``rule``'s choice (no training: epoch 0)."""
    scores: dict[float, float] = {}
    for path in paths:
        record = read_metrics(path)
        softness = float(record["softness"])
        if softness in scores:
            raise ValueError(f"{path}: candidate b = {softness} is scored twice")
        scores[softness] = _score(record, metric, path)
    if keep_count is not None:
        kept = keep(scores, metric, keep_count)
        decision = {"strategy": "halving", "keep": keep_count}
    else:
        kept = [zeroshot_choice(scores, metric, rule, tolerance)]
        decision = {"strategy": "zeroshot", "rule": rule, "tolerance": tolerance}
    ranked = [{"softness": b, "score": scores[b]} for b in sorted(scores)]
    where = {"rung": rung, "until_epoch": until_epoch}
    return {**decision, **where, "metric": metric, "scores": ranked, "kept": kept}


def benchmark_seconds(paths: Sequence[PathLike]) -> float:
    """The summed wall seconds (column ``s``) of Snakemake benchmark files."""
    total = 0.0
    for path in paths:
        try:
            table = pd.read_csv(path, sep="\t")
            total += float(table["s"].sum())
        except (OSError, KeyError, ValueError, pd.errors.ParserError) as error:
            raise ValueError(f"{path}: not a Snakemake benchmark file ({error})") from error
    return total


def _sweep(
    sweep: Sequence[PathLike], costs: Sequence[PathLike], metric: str, test: float
) -> dict[str, Any] | None:
    """The full sweep's test scores, its best b, the regret of the selection's test score
    (positive: worse than the sweep's best) and the sweep's cost."""
    if not sweep:
        return None
    records = {path: read_metrics(path) for path in sweep}
    scores = {float(r["softness"]): _score(r, metric, path) for path, r in records.items()}
    pick = min if lower_is_better(metric) else max
    best = pick(sorted(scores), key=scores.__getitem__)
    regret = test - scores[best] if lower_is_better(metric) else scores[best] - test
    test_scores = [{"softness": b, "score": scores[b]} for b in sorted(scores)]
    cost = benchmark_seconds(costs)
    return {"scores": test_scores, "best": best, "regret": regret, "cost_s": cost}


def trained_epochs(rungs: Sequence[dict[str, Any]], epochs: int) -> int:
    """Epochs a selection trained, over all candidates: halving's rungs continue one another
    (rung r trains its candidates from the previous rung's end to its own); zeroshot trains
    only the chosen b, for the whole schedule."""
    if rungs[-1]["strategy"] != "halving":
        return epochs
    total, start = 0, 0
    for rung in rungs:
        total += len(rung["scores"]) * (rung["until_epoch"] - start)
        start = rung["until_epoch"]
    return total


def summarize(
    decisions: Sequence[PathLike],
    test: PathLike,
    costs: Sequence[PathLike],
    epochs: int,
    sweep: Sequence[PathLike] = (),
    sweep_costs: Sequence[PathLike] = (),
) -> dict[str, Any]:
    """A selection's record: identity, decisions, chosen b, its test metrics, its cost (wall
    seconds of its jobs, and epochs trained against the ``epochs`` of each candidate in a full
    sweep), and the full sweep beside it (None when the config does not run it)."""
    rungs = []
    for path in decisions:
        with open(path, encoding="utf-8") as f:
            rungs.append(json.load(f))
    record = read_metrics(test)
    metric = rungs[-1]["metric"]
    identity = ("task", "dataset", "backbone", "group", "filter", "softness_pos", "seed")
    score = _score(record, metric, test)
    cost = benchmark_seconds(costs)
    comparison = _sweep(sweep, sweep_costs, metric, score)
    if comparison is not None:
        comparison["compute_ratio"] = comparison["cost_s"] / cost if cost > 0 else math.inf
    candidates = [entry["softness"] for entry in rungs[0]["scores"]]
    return {
        "strategy": rungs[-1]["strategy"],
        **{key: record.get(key) for key in identity},
        "metric": metric,
        "candidates": candidates,
        "chosen": float(record["softness"]),
        "rungs": rungs,
        "test": record["metrics"],
        "test_score": score,
        "cost_s": cost,
        "epochs": trained_epochs(rungs, epochs),
        "validations": sum(len(rung["scores"]) for rung in rungs),
        "sweep_epochs": len(candidates) * epochs,
        "sweep": comparison,
    }


def selection_table(summaries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per selection: the chosen b, its test score and cost, against the full sweep."""
    rows = []
    for s in summaries:
        sweep = s.get("sweep") or {}
        rows.append(
            {
                **{k: s[k] for k in ("task", "dataset", "backbone", "group", "filter", "seed")},
                "strategy": s["strategy"],
                "metric": s["metric"],
                "candidates": " ".join(f"{b:g}" for b in s["candidates"]),
                "chosen_b": s["chosen"],
                "test_score": s["test_score"],
                "epochs": s["epochs"],
                "sweep_epochs": s["sweep_epochs"],
                "epoch_ratio": s["sweep_epochs"] / s["epochs"],
                "cost_s": s["cost_s"],
                "sweep_best_b": sweep.get("best", math.nan),
                "regret": sweep.get("regret", math.nan),
                "sweep_cost_s": sweep.get("cost_s", math.nan),
                "compute_ratio": sweep.get("compute_ratio", math.nan),
            }
        )
    keys = ["task", "dataset", "backbone", "group", "filter", "strategy", "seed"]
    return pd.DataFrame(rows).sort_values(keys, ignore_index=True)


def _study_row(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One model and strategy over its seeds: what it chose against the full sweep."""
    metric, lower = group[0]["metric"], lower_is_better(group[0]["metric"])
    by_b: dict[float, list[float]] = {}
    for s in group:
        for entry in s["sweep"]["scores"]:
            by_b.setdefault(entry["softness"], []).append(entry["score"])
    means = {b: float(np.mean(v)) for b, v in by_b.items()}
    best = (min if lower else max)(sorted(means), key=means.__getitem__)
    chosen = np.array([s["test_score"] for s in group])
    regret = (chosen.mean() - means[best]) if lower else (means[best] - chosen.mean())
    spread = float(np.std(by_b[best], ddof=1)) if len(by_b[best]) > 1 else math.nan
    return {
        **{k: group[0][k] for k in ("task", "dataset", "backbone", "strategy")},
        "metric": metric,
        "seeds": len(group),
        "chosen_b": " ".join(f"{s['chosen']:g}" for s in group),
        "test_mean": float(chosen.mean()),
        "sweep_best_b": best,
        "sweep_best_mean": means[best],
        "seed_spread": spread,
        "regret": float(regret),
        "within_spread": bool(regret <= spread) if math.isfinite(spread) else None,
        "oracle_regret": float(np.mean([s["sweep"]["regret"] for s in group])),
        "epoch_ratio": float(np.mean([s["sweep_epochs"] / s["epochs"] for s in group])),
        "wall_ratio": float(np.mean([s["sweep"]["compute_ratio"] for s in group])),
    }


def study_table(summaries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Each model and strategy over its seeds, against the full sweep of the same candidates:
    the b chosen per seed, the regret (the sweep's best b's mean test score minus the chosen
    models' mean, positive = worse) beside the seeds' spread at that b (standard deviation),
    ``oracle_regret`` against each seed's own best b, and the compute ratios full sweep /
    strategy in epochs and in wall seconds.  Selections without a sweep are left out."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for s in summaries:
        if s.get("sweep"):
            key = (s["task"], s["dataset"], s["backbone"], s["group"], s["filter"], s["strategy"])
            groups.setdefault(key, []).append(s)
    rows = [_study_row(sorted(g, key=lambda s: s["seed"])) for _, g in sorted(groups.items())]
    return pd.DataFrame(rows)
