"""The constraint operator of linear maps between two representations, and its spectrum or null
space, without a dense (d_in d_out)^2 operator (docs/method.md §8).

For a map X: R -> S (a d_S x d_R block, vectorised row-major), every generator contributes
L = I (x) D_R^T - D_S (x) I, with D = drho(A) for a Lie-algebra generator and the difference
D = (rho(h) - I) / theta_h for a discrete one (theta_h = 2 pi / order(h); ``"unit"`` divides by 1,
the reference code's way).  The stacked C = [L_1; L_2; ...] is kept sparse.  Its columns split
into independent blocks (no row touches two): the connected components of its row-column graph.
Where a filter needs the full spectrum (``threshold``, ``rank``, ...), every block up to
:data:`DENSE_LIMIT` columns is decomposed densely.  Where only the null space is needed (``shrink``
at any b, every filter at b = 0 or 1), small blocks get a dense eigh and blocks from
:data:`ITERATIVE_FROM` columns get LOBPCG on the implicit operator C^T C: nothing of size N^2 is
ever formed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh, lobpcg

from softeq.reps import Rep
from softeq.spectral import ZERO_TOL, Spectrum, block_spectrum, component_labels

__all__ = [
    "DENSE_LIMIT",
    "DISCRETE_DIFFERENCES",
    "ITERATIVE_FROM",
    "MapSpectrum",
    "map_constraint",
    "map_spectrum",
]

DENSE_LIMIT = 1500
"""Largest block of the constraint operator (columns) given a full dense spectrum."""

ITERATIVE_FROM = 400
"""Blocks of at least this many columns get their null space by LOBPCG, not by a dense eigh."""

DISCRETE_DIFFERENCES = ("angle", "unit")
"""How a discrete generator h enters C: (rho(h) - I) / theta_h (``angle``, softeq's), or
rho(h) - I (``unit``, the reference code's utils/representation_utils.py:171)."""


def map_constraint(
    in_type: Rep, out_type: Rep, discrete_difference: str = "angle"
) -> sp.csr_matrix:
    """The stacked constraint C (one N x N block per generator, N = d_in d_out) of maps
    ``in_type -> out_type``, acting on the row-major vec of a (d_out, d_in) block."""
    if discrete_difference not in DISCRETE_DIFFERENCES:
        raise ValueError(
            f"discrete_difference must be one of {DISCRETE_DIFFERENCES}, "
            f"got {discrete_difference!r}"
        )
    if in_type.group.name != out_type.group.name:
        raise ValueError(f"maps between {in_type.group} and {out_type.group} representations")
    group = in_type.group
    eye_in = sp.identity(in_type.dim, format="csr")
    eye_out = sp.identity(out_type.dim, format="csr")
    blocks = [
        sp.kron(eye_out, d_in.T) - sp.kron(d_out, eye_in)
        for d_in, d_out in zip(in_type.lie(), out_type.lie(), strict=True)
    ]
    angles = (
        group.discrete_angles if discrete_difference == "angle" else (1.0,) * len(group.discrete)
    )
    for h_in, h_out, theta in zip(in_type.discrete(), out_type.discrete(), angles, strict=True):
        d_in, d_out = (h_in - eye_in) / theta, (h_out - eye_out) / theta
        blocks.append(sp.kron(eye_out, d_in.T) - sp.kron(d_out, eye_in))
    stacked = sp.vstack(blocks, format="csr")
    stacked.eliminate_zeros()
    return stacked


@dataclass
class MapSpectrum:
    """What the projector of one (in type, out type) block needs: the full ascending SVD of C
    (``spectrum``, method ``blocks``), or only an orthonormal basis (N, z) of its null space
    (``null_basis``, method ``null``: dense per block up to :data:`ITERATIVE_FROM` columns,
    LOBPCG beyond)."""

    size: int
    constraint: sp.csr_matrix
    sigma_max: float
    method: str  # "blocks" | "null"
    largest_block: int
    spectrum: Spectrum | None = None
    null_basis: np.ndarray | None = None

    @property
    def null_dim(self) -> int:
        if self.spectrum is not None:
            return self.spectrum.null_dim
        return int(self.null_basis.shape[1])

    def null_vectors(self) -> np.ndarray:
        """An orthonormal basis (N, z) of the exactly equivariant maps."""
        if self.null_basis is not None:
            return self.null_basis
        return self.spectrum.columns(np.flatnonzero(self.spectrum.sigma < ZERO_TOL))


_CACHE: dict[tuple, MapSpectrum] = {}


def map_spectrum(
    in_type: Rep,
    out_type: Rep,
    discrete_difference: str = "angle",
    full: bool = True,
    dense_limit: int = DENSE_LIMIT,
) -> MapSpectrum:
    """The full spectrum of C (``full``; every block must fit ``dense_limit``), or its null space
    (any size: what ``shrink`` needs).  Computed once per process for each (group, types,
    difference, kind): every softness and filter reuses it."""
    key = (in_type.group.name, in_type.key, out_type.key, discrete_difference, full, dense_limit)
    if key not in _CACHE:
        _CACHE[key] = _map_spectrum(in_type, out_type, discrete_difference, full, dense_limit)
    return _CACHE[key]


def _map_spectrum(in_type, out_type, discrete_difference, full, dense_limit) -> MapSpectrum:
    constraint = map_constraint(in_type, out_type, discrete_difference)
    size = constraint.shape[1]
    labels = component_labels(constraint)
    counts = np.bincount(labels)
    largest = int(counts.max()) if counts.size else 0
    if full:
        if largest > dense_limit:
            raise ValueError(
                f"maps {in_type.key} -> {out_type.key} of {in_type.group}: the full spectrum "
                f"needs a dense decomposition of a {largest}-column block of the constraint "
                f"(dense limit {dense_limit}); filter 'shrink' needs only the null space"
            )
        spectrum = block_spectrum(constraint, labels)
        return MapSpectrum(size, constraint, spectrum.sigma_max, "blocks", largest, spectrum)
    columns = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    pieces = []
    for label in range(counts.size):
        cols = columns[starts[label] : starts[label + 1]]
        block = constraint[:, cols]
        vectors = _block_null_space(block[np.flatnonzero(np.diff(block.indptr))])
        if vectors.shape[1]:
            embedded = np.zeros((size, vectors.shape[1]))
            embedded[cols] = vectors
            pieces.append(embedded)
    null = np.hstack(pieces) if pieces else np.zeros((size, 0))
    return MapSpectrum(size, constraint, _sigma_max(constraint), "null", largest, None, null)


def _block_null_space(block: sp.csr_matrix) -> np.ndarray:
    n = block.shape[1]
    if block.shape[0] == 0:
        return np.eye(n)
    if n < ITERATIVE_FROM:
        values, vectors = np.linalg.eigh((block.T @ block).toarray())
        return vectors[:, np.sqrt(np.clip(values, 0.0, None)) < ZERO_TOL]
    return _lobpcg_null_space(block)


def _gram_operator(block: sp.csr_matrix) -> LinearOperator:
    transpose = block.T.tocsr()
    n = block.shape[1]
    return LinearOperator(
        (n, n), matvec=lambda x: transpose @ (block @ x), matmat=lambda x: transpose @ (block @ x)
    )


def _lobpcg_null_space(block: sp.csr_matrix, seed: int = 0) -> np.ndarray:
    """Null space of a large block: LOBPCG for the smallest eigenpairs of C^T C, the block of
    trial vectors doubled until it holds a direction outside the null space."""
    n = block.shape[1]
    gram = _gram_operator(block)
    rng = np.random.default_rng(seed)
    k = 8
    while True:
        with warnings.catch_warnings():  # it reports stagnation near 1e-10; the test is below
            warnings.simplefilter("ignore", UserWarning)
            values, vectors = lobpcg(
                gram, rng.standard_normal((n, k)), largest=False, tol=1e-9, maxiter=500
            )
        null = np.sqrt(np.clip(values, 0.0, None)) < ZERO_TOL
        if not null.all() or 5 * 2 * k >= n:
            break
        k *= 2
    if null.all() and k < n:
        raise RuntimeError(
            f"LOBPCG found {k} null directions of a {n}-column block and could not bound the "
            "null space; raise softeq.rep_spectral.DENSE_LIMIT to decompose it densely"
        )
    basis, _ = np.linalg.qr(vectors[:, null])
    return basis


def _sigma_max(constraint: sp.csr_matrix) -> float:
    """The largest singular value of C: sqrt of the top eigenvalue of C^T C (Lanczos)."""
    if constraint.nnz == 0:
        return 0.0
    value = eigsh(_gram_operator(constraint), k=1, which="LA", return_eigenvectors=False)
    return float(np.sqrt(max(value[0], 0.0)))
