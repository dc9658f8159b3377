"""Choosing the softness b from candidates without fine-tuning each fully (docs/selection.md).

Two strategies, both scored on the validation split (never the test split):

* ``halving``: successive halving (Hyperband's inner loop).  With n candidates and ratio eta,
  rung r trains ``sizes[r]`` candidates (n, ceil(n / eta), ..., 1) up to epoch ``epochs[r]`` of the
  full schedule, ``epochs[r] = round(E eta^-(R-1-r))``; the best ``sizes[r+1]`` go on from their
  state, and the last rung trains one candidate to the end of the schedule.
* ``zeroshot``: the softened pre-trained model is scored at every candidate with no training;
  rule ``best`` takes the best score, rule ``tolerance`` the smallest b (the most equivariant)
  whose score is within a relative ``tolerance`` of the best one.  One fine-tune follows.

Ties go to the smaller b.  Pure bookkeeping: no torch, no files.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

__all__ = [
    "RULES",
    "STRATEGIES",
    "best_first",
    "keep",
    "lower_is_better",
    "rung_epochs",
    "rung_sizes",
    "zeroshot_choice",
]

STRATEGIES = ("halving", "zeroshot")
RULES = ("best", "tolerance")
_LOWER_IS_BETTER = ("ade", "fde", "error", "loss", "mse")


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better: displacements, errors and losses fall as a
    model improves; accuracies, mIoU and the combined scores rise."""
    return any(token in metric.lower() for token in _LOWER_IS_BETTER)


def rung_sizes(candidates: int, eta: int) -> list[int]:
    """How many candidates each rung trains: n, ceil(n / eta), ... down to one."""
    if candidates < 1 or eta < 2:
        raise ValueError(f"halving needs candidates >= 1 and eta >= 2, got {candidates}, {eta}")
    sizes = [candidates]
    while sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


def rung_epochs(epochs: int, rungs: int, eta: int) -> list[int]:
    """The epoch of the full ``epochs``-long schedule at which each rung ends: ``epochs`` times
    eta^-(rungs - 1 - r), rounded, at least 1; the last rung ends the schedule."""
    ends = [max(1, round(epochs / eta ** (rungs - 1 - r))) for r in range(rungs)]
    if any(a >= b for a, b in itertools.pairwise(ends)):
        raise ValueError(
            f"a schedule of {epochs} epochs gives no {rungs} rising rungs with eta {eta} "
            f"(they would end at epochs {ends}): lengthen the schedule, raise eta, or drop "
            "candidates"
        )
    return ends


def best_first(scores: Mapping[float, float], metric: str) -> list[float]:
    """The candidates ordered from the best score to the worst (ties: the smaller b first)."""
    bad = sorted(b for b, value in scores.items() if not math.isfinite(value))
    if bad:
        raise ValueError(f"{metric}: non-finite validation scores at b = {bad}")
    sign = 1.0 if lower_is_better(metric) else -1.0
    return sorted(scores, key=lambda b: (sign * scores[b], b))


def zeroshot_choice(
    scores: Mapping[float, float], metric: str, rule: str = "best", tolerance: float = 0.0
) -> float:
    """The b that the zero-shot ``rule`` picks from the candidates' validation ``scores``."""
    if not scores:
        raise ValueError("zeroshot: no candidate scores")
    best = best_first(scores, metric)[0]
    if rule == "best":
        return best
    if rule != "tolerance":
        raise ValueError(f"zeroshot rule {rule!r}: expected one of {RULES}")
    if tolerance < 0:
        raise ValueError(f"zeroshot tolerance {tolerance}: must be >= 0")
    top = scores[best]
    margin = tolerance * abs(top)
    if lower_is_better(metric):
        within = [b for b, value in scores.items() if value <= top + margin]
    else:
        within = [b for b, value in scores.items() if value >= top - margin]
    return min(within)


def keep(scores: Mapping[float, float], metric: str, count: int) -> list[float]:
    """The ``count`` best candidates of a rung, in increasing b."""
    return sorted(best_first(scores, metric)[:count])
