"""Matrix groups given by their generators: Lie-algebra generators (the continuous part) and
discrete generators, as n x n matrices acting on the standard representation V (docs/method.md §8).

Built in: SO(n), O(n), the Lorentz group O(1,3), the permutation group S_n, the cyclic group Z_n
(acting by cyclic shifts), and direct products (acting block-diagonally on V_1 + V_2).  Names, as
configs and paths spell them: ``SO3``, ``O5``, ``Lorentz``, ``S4``, ``Z6``, and products joined by
``x`` (``SO3xZ2``).  The planar groups of :mod:`softeq.groups` (``C4``, ``D4``, ``flip``,
``SO2`` on pair features) are separate and unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg

__all__ = [
    "MATRIX_GROUP_PATTERN",
    "SO",
    "Lorentz",
    "MatrixGroup",
    "O",
    "S",
    "Z",
    "matrix_group",
    "product",
]

_ATOM = r"(?:SO|O|S|Z)[1-9][0-9]*|Lorentz"
MATRIX_GROUP_PATTERN = rf"(?:{_ATOM})(?:x(?:{_ATOM}))*"
"""Regular expression of matrix-group names (products joined by ``x``)."""

_MAX_ORDER = 10_000


@dataclass(frozen=True, eq=False)
class MatrixGroup:
    """A matrix group by its generators on V = R^n.

    ``lie_algebra`` (k, n, n): a basis of the Lie algebra (exp(t A) lies in the group);
    ``discrete`` (m, n, n): group elements that, with the identity component, generate the group.
    """

    name: str
    lie_algebra: np.ndarray
    discrete: np.ndarray

    def __post_init__(self) -> None:
        for field_name in ("lie_algebra", "discrete"):
            value = np.array(getattr(self, field_name), dtype=np.float64)
            if value.ndim != 3 or value.shape[1] != value.shape[2]:
                raise ValueError(f"{self.name}: {field_name} must have shape (k, n, n)")
            value.setflags(write=False)
            object.__setattr__(self, field_name, value)
        if self.lie_algebra.shape[1:] != self.discrete.shape[1:] and min(
            self.lie_algebra.shape[0], self.discrete.shape[0]
        ):
            raise ValueError(f"{self.name}: Lie and discrete generators differ in size")
        if not (self.lie_algebra.shape[0] or self.discrete.shape[0]):
            raise ValueError(f"{self.name}: a group needs at least one generator")

    @property
    def n(self) -> int:
        """Dimension of the standard representation V."""
        gens = self.lie_algebra if self.lie_algebra.shape[0] else self.discrete
        return int(gens.shape[1])

    @property
    def discrete_angles(self) -> tuple[float, ...]:
        """theta_h = 2 pi / order(h) per discrete generator: the angle its difference generator
        (rho(h) - I) / theta is divided by (pi for a reflection, 2 pi / n for an n-cycle)."""
        return tuple(2 * math.pi / _order(h) for h in self.discrete)

    def sample(self, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """A random element: a random word in the discrete generators times exp(sum_i t_i A_i),
        t_i ~ N(0, scale^2)."""
        element = np.eye(self.n)
        if self.lie_algebra.shape[0]:
            t = rng.normal(0.0, scale, size=self.lie_algebra.shape[0])
            element = scipy.linalg.expm(np.tensordot(t, self.lie_algebra, axes=1))
        for _ in range(2):
            for j in rng.permutation(self.discrete.shape[0]):
                power = int(rng.integers(0, min(_order(self.discrete[j]), 64)))
                element = element @ np.linalg.matrix_power(self.discrete[j], power)
        return element

    def __str__(self) -> str:
        return self.name


def _order(h: np.ndarray) -> int:
    """The order of a discrete generator (the least k with h^k = I)."""
    power = h.copy()
    eye = np.eye(h.shape[0])
    for k in range(1, _MAX_ORDER + 1):
        if np.allclose(power, eye, atol=1e-9):
            return k
        power = power @ h
    raise ValueError(f"a discrete generator has order above {_MAX_ORDER}; give a finite-order one")


def _empty(n: int) -> np.ndarray:
    return np.zeros((0, n, n))


def _so_algebra(n: int) -> np.ndarray:
    """The rotation generators E_ji - E_ij (i < j) of so(n): exp(t A) turns e_i towards e_j."""
    gens = []
    for i in range(n):
        for j in range(i + 1, n):
            a = np.zeros((n, n))
            a[j, i], a[i, j] = 1.0, -1.0
            gens.append(a)
    return np.array(gens).reshape(-1, n, n)


def SO(n: int) -> MatrixGroup:
    """The rotations of R^n: n (n - 1) / 2 Lie generators."""
    if n < 2:
        raise ValueError(f"SO(n) needs n >= 2, got {n}")
    return MatrixGroup(f"SO{n}", _so_algebra(n), _empty(n))


def O(n: int) -> MatrixGroup:  # noqa: E743 - the group's own name
    """Rotations and reflections of R^n: so(n) and the reflection diag(-1, 1, ..., 1)."""
    if n < 1:
        raise ValueError(f"O(n) needs n >= 1, got {n}")
    reflection = np.eye(n)
    reflection[0, 0] = -1.0
    lie = _so_algebra(n) if n >= 2 else _empty(1)
    return MatrixGroup(f"O{n}", lie, reflection[None])


def Lorentz() -> MatrixGroup:
    """O(1,3), metric diag(1, -1, -1, -1): three spatial rotations, three boosts
    (A[0, i] = A[i, 0] = 1), parity diag(1, -1, -1, -1) and time reversal diag(-1, 1, 1, 1)."""
    lie = np.zeros((6, 4, 4))
    lie[:3, 1:, 1:] = _so_algebra(3)
    for i in range(3):
        lie[3 + i, 0, 1 + i] = lie[3 + i, 1 + i, 0] = 1.0
    parity = np.diag([1.0, -1.0, -1.0, -1.0])
    time_reversal = np.diag([-1.0, 1.0, 1.0, 1.0])
    return MatrixGroup("Lorentz", lie, np.stack([parity, time_reversal]))


def _permutation(perm: list[int]) -> np.ndarray:
    matrix = np.zeros((len(perm), len(perm)))
    matrix[perm, np.arange(len(perm))] = 1.0  # e_i -> e_perm[i]
    return matrix


def S(n: int) -> MatrixGroup:
    """Permutations of n coordinates, generated by the transposition (0 1) and the n-cycle."""
    if n < 2:
        raise ValueError(f"S(n) needs n >= 2, got {n}")
    swap = list(range(n))
    swap[0], swap[1] = 1, 0
    gens = [_permutation(swap)]
    if n > 2:
        gens.append(_permutation([(i + 1) % n for i in range(n)]))
    return MatrixGroup(f"S{n}", _empty(n), np.stack(gens))


def Z(n: int) -> MatrixGroup:
    """The cyclic group of order n acting on R^n by the cyclic shift."""
    if n < 2:
        raise ValueError(f"Z(n) needs n >= 2, got {n}")
    return MatrixGroup(f"Z{n}", _empty(n), _permutation([(i + 1) % n for i in range(n)])[None])


def _embed(gens: np.ndarray, n: int, at: int) -> np.ndarray:
    out = np.zeros((gens.shape[0], n, n))
    size = gens.shape[1]
    out[:, at : at + size, at : at + size] = gens
    return out


def product(*groups: MatrixGroup) -> MatrixGroup:
    """The direct product G_1 x G_2 x ..., acting block-diagonally on V_1 + V_2 + ...: each
    factor's generators act on its own block (identity elsewhere, for discrete ones)."""
    if len(groups) < 2:
        raise ValueError("a product needs at least two groups")
    n = sum(g.n for g in groups)
    lie, discrete, at = [], [], 0
    for group in groups:
        lie.append(_embed(group.lie_algebra, n, at))
        eye = np.broadcast_to(np.eye(n), (group.discrete.shape[0], n, n)).copy()
        eye[:, at : at + group.n, at : at + group.n] = group.discrete
        discrete.append(eye)
        at += group.n
    name = "x".join(g.name for g in groups)
    return MatrixGroup(name, np.concatenate(lie), np.concatenate(discrete))


_BUILDERS = {"SO": SO, "O": O, "S": S, "Z": Z}


@lru_cache(maxsize=64)
def _parse(name: str) -> MatrixGroup:
    if not re.fullmatch(MATRIX_GROUP_PATTERN, name):
        raise ValueError(
            f"unknown matrix group {name!r}: expected SO<n>, O<n>, Lorentz, S<n> or Z<n>, or "
            "a product of them joined by 'x' (e.g. 'SO3xZ2')"
        )
    factors = []
    for atom in name.split("x"):
        if atom == "Lorentz":
            factors.append(Lorentz())
            continue
        kind, order = re.fullmatch(r"(SO|O|S|Z)([0-9]+)", atom).groups()
        factors.append(_BUILDERS[kind](int(order)))
    return factors[0] if len(factors) == 1 else product(*factors)


def matrix_group(name: str | MatrixGroup) -> MatrixGroup:
    """The group of a name (``O5``, ``SO3``, ``Lorentz``, ``S4``, ``Z6``, ``SO3xZ2``)."""
    if isinstance(name, MatrixGroup):
        return name
    return _parse(str(name))
