"""The synthetic O(5)-invariant regression set (the benchmark of Finzi et al. 2021, the
reference's ``O5Synthetic``; docs/fidelity.md), drawn deterministically from a seed.

An input is x = (x1, x2) in R^10, two 5-vectors with N(0, 1) entries (the layout of the
representation 2V); the target is

    y = sin|x1| - |x2|^3 / 2 + <x1, x2> / (|x1| |x2|)
        + sigma (|x1_0| + |x1_1| + |x2_0| + |x2_1|) / (|x1_2| + |x1_3| + |x2_2| + |x2_3| + 1),

whose last term (the symmetry breaking, weighted by the noise level sigma) is not O(5)-invariant.
Each split is an independent draw from ``(seed, split)``, so changing one split's size leaves the
others unchanged, and every noise level shares the same inputs.  Standardisation statistics come
from the training split only (the reference computes them over all of its draws).

Dataset names carry the noise level in hundredths: ``o5-s30`` is sigma = 0.30 (``o5-s05`` is
0.05, ``o5-s00`` the invariant target); they match the workflow's dataset wildcard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIM",
    "FAMILY",
    "SPLITS",
    "O5Protocol",
    "Standardisation",
    "dataset_name",
    "invariant_target",
    "make_split",
    "noise_of",
    "standardisation",
    "symmetry_breaking",
    "target",
]

FAMILY = "o5"
DIM = 5  # the dimension of the standard representation V of O(5)
SPLITS = ("train", "val", "test")
_NAME_RE = re.compile(rf"{FAMILY}-s(?P<hundredths>[0-9]{{2,3}})")


def dataset_name(sigma: float) -> str:
    """``o5-s30`` for sigma = 0.3: the noise level in hundredths (two digits at least)."""
    hundredths = round(sigma * 100)
    if sigma < 0 or abs(hundredths - sigma * 100) > 1e-9 or hundredths > 999:
        raise ValueError(f"noise level {sigma!r}: expected a multiple of 0.01 in [0, 9.99]")
    return f"{FAMILY}-s{hundredths:02d}"


def noise_of(name: str) -> float:
    """The noise level sigma of a dataset name (``o5-s30`` -> 0.3); other names raise."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"dataset {name!r}: expected {FAMILY}-s<hundredths>, e.g. o5-s30")
    return int(match["hundredths"]) / 100


def invariant_target(x: np.ndarray) -> np.ndarray:
    """sin|x1| - |x2|^3 / 2 + <x1, x2> / (|x1| |x2|) for rows x = (x1, x2) of shape (N, 10)."""
    x1, x2 = x[:, :DIM], x[:, DIM:]
    n1, n2 = np.linalg.norm(x1, axis=1), np.linalg.norm(x2, axis=1)
    return np.sin(n1) - 0.5 * n2**3 + (x1 * x2).sum(axis=1) / (n1 * n2)


def symmetry_breaking(x: np.ndarray) -> np.ndarray:
    """(|x1_0| + |x1_1| + |x2_0| + |x2_1|) / (|x1_2| + |x1_3| + |x2_2| + |x2_3| + 1)."""
    a = np.abs(x)
    top = a[:, 0] + a[:, 1] + a[:, DIM] + a[:, DIM + 1]
    bottom = a[:, 2] + a[:, 3] + a[:, DIM + 2] + a[:, DIM + 3] + 1
    return top / bottom


def target(x: np.ndarray, sigma: float) -> np.ndarray:
    """The regression target at noise level ``sigma`` (the invariant part plus sigma times the
    symmetry breaking)."""
    y = invariant_target(x)
    return y + sigma * symmetry_breaking(x) if sigma > 0 else y


@dataclass(frozen=True)
class O5Protocol:
    """Split sizes and the seed of the draw (config: ``datasets.o5``; the reference's N)."""

    n_train: int = 1000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for split in SPLITS:
            if not isinstance(getattr(self, f"n_{split}"), int) or getattr(self, f"n_{split}") < 1:
                raise ValueError(f"n_{split}: expected a positive integer")

    def size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {SPLITS}")
        return getattr(self, f"n_{split}")


def make_split(protocol: O5Protocol, split: str, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 10), y (N,)) of one split, float64: an independent draw from (seed, split)."""
    n = protocol.size(split)
    rng = np.random.default_rng([protocol.seed, SPLITS.index(split)])
    x = rng.standard_normal((n, 2 * DIM))
    return x, target(x, sigma)


@dataclass(frozen=True)
class Standardisation:
    """Input scale per 5-vector (repeated over its entries) and target mean / std.

    The model sees x / x_scale and predicts (y - y_mean) / y_std; the input mean is not
    subtracted (it would break invariance), as in the reference.
    """

    x_scale: np.ndarray  # (10,)
    y_mean: float
    y_std: float


def standardisation(x_train: np.ndarray, y_train: np.ndarray) -> Standardisation:
    """The statistics of the training split: the RMS of each 5-vector over samples and entries,
    and the target's mean and (population) standard deviation."""
    rms = np.sqrt((x_train.reshape(len(x_train), 2, DIM) ** 2).mean(axis=(0, 2)))
    return Standardisation(np.repeat(rms, DIM), float(y_train.mean()), float(y_train.std()))
