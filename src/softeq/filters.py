"""Spectral filters: how the softness b maps ascending singular values to kept weights.

A soft projector keeps the singular direction v_i of the constraint operator with weight
f_b(sigma_i):  P_b = sum_i f_b(sigma_i) v_i v_i^T  (docs/method.md §2).  Every filter satisfies
f_b(sigma) * sigma <= b_eff * sigma_max, the inequality the equivariance guarantee rests on; each
reports its b_eff.

* ``shrink`` (default): 1 on the null space, b elsewhere.  Exact at b = 0, identity at b = 1 and
  smooth in b for every spectrum, degenerate ones included.
* ``threshold``: 1 where sigma <= b sigma_max, else 0 (the paper's subspace definition).
* ``rank``: the reference code's rule.  With z exact zeros among N, keep the first
  z + floor((N - z - 1) b) directions with weight 1, the rest exp(-sigma / b); b = 1 is the
  identity.
* ``rank-hard``: ``rank`` with the reference code's hard mask: the rest get weight 0.
* ``decay``: 1 on the null space, exp(-sigma / b) elsewhere; b = 1 is the identity.  The
  reference code's invariant filter of (x, y) vectors, applied pair by pair: a pair has no null
  space, so its rank rule keeps floor((2 - 1) b) = 0 directions (docs/fidelity.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from softeq.spectral import ZERO_TOL

__all__ = [
    "FILTERS",
    "METHODS",
    "RPP",
    "FilterResult",
    "check_softness",
    "filter_weights",
    "resolve_filter",
    "resolve_method",
]

FILTERS = ("shrink", "threshold", "rank", "rank-hard", "decay")
"""Filter names, as configs, paths, the CLI and the API spell them."""

RPP = "rpp"
"""Residual pathway priors (docs/method.md §7): a softening method, not a spectral filter; it
rides the same ``filter`` name of settings and paths (softeq.rpp)."""

METHODS = (*FILTERS, RPP)
"""Every name a setting's ``filter`` may take: the spectral filters and ``rpp``."""


@dataclass(frozen=True)
class FilterResult:
    """Weights per singular direction (aligned with the ascending sigma) and the filter's b_eff."""

    weights: np.ndarray
    b_eff: float
    kept: int  # directions kept with weight exactly 1


def check_softness(softness: float, name: str = "softness") -> float:
    """Return ``softness`` as a float after checking it lies in [0, 1]."""
    value = float(softness)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must lie in [0, 1], got {softness!r}")
    return value


def resolve_filter(filter: str, hard_mask: bool = False) -> str:
    """The filter's name after checking it; ``hard_mask=True`` spells ``rank`` as ``rank-hard``
    (the reference code's flag, kept for callers that pass it)."""
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; expected one of {FILTERS}")
    if hard_mask and filter not in ("rank", "rank-hard"):
        raise ValueError(f"hard_mask applies to the 'rank' filter only, not to {filter!r}")
    return "rank-hard" if hard_mask else filter


def resolve_method(name: str) -> str:
    """A setting's ``filter`` after checking it: a spectral filter or ``rpp``."""
    if name not in METHODS:
        raise ValueError(
            f"unknown filter {name!r}; expected one of {METHODS} ({RPP!r}: residual pathway "
            "priors, the others spectral filters)"
        )
    return name


def filter_weights(
    sigma: np.ndarray, softness: float, filter: str = "shrink", hard_mask: bool = False
) -> FilterResult:
    """Weights f_b(sigma_i) for ascending singular values ``sigma``; see the module docstring."""
    b = check_softness(softness)
    filter = resolve_filter(filter, hard_mask)
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.ndim != 1 or np.any(np.diff(sigma) < 0):
        raise ValueError("filter_weights expects a 1-D array of ascending singular values")
    null = sigma < ZERO_TOL
    sigma_max = float(sigma[-1]) if sigma.size else 0.0
    if filter == "shrink":
        weights = np.where(null, 1.0, b)
        b_eff = b
    elif filter == "threshold":
        # the relative slack keeps directions at exactly b * sigma_max from flickering on rounding
        weights = np.where(null | (sigma <= b * sigma_max * (1 + 1e-9)), 1.0, 0.0)
        b_eff = b
    else:  # rank, rank-hard, decay
        if filter == "decay":
            weights = _rank_weights(sigma, b, int(null.sum()), hard=False, keep_null_only=True)
        else:
            weights = _rank_weights(sigma, b, int(null.sum()), hard=filter == "rank-hard")
        b_eff = float(np.max(weights * sigma) / sigma_max) if sigma_max > 0 else 0.0
    return FilterResult(weights, b_eff, int(np.count_nonzero(weights == 1.0)))


def _rank_weights(
    sigma: np.ndarray, b: float, zeros: int, hard: bool, keep_null_only: bool = False
) -> np.ndarray:
    n = sigma.size
    if b == 1.0:
        return np.ones(n)
    keep = zeros if keep_null_only else zeros + math.floor(max(n - zeros - 1, 0) * b)
    weights = np.zeros(n)
    weights[:keep] = 1.0
    if not hard and b > 0:
        weights[keep:] = np.exp(-sigma[keep:] / b)
    return weights
