"""Spectral decompositions of constraint operators: ascending SVD and canonical real Schur.

``constraint_svd`` decomposes a stacked constraint operator C = [C_1; C_2; ...] (all generators)
as C = U S V^T with the singular values in ascending order.  When C only couples coordinates
within small independent sets (the orbits of a permutation action: C4, flip and D4 on grids), it
decomposes each set on its own, batched by size, which is exact and takes milliseconds where a
dense SVD of a 37 x 37 grid operator takes a second.

``real_schur`` gives the canonical real Schur form D = Z T Z^T of a *normal* generator: T block
diagonal with 1 x 1 blocks (real eigenvalues) and 2 x 2 blocks a I + b J (b > 0) for the pairs
a +- ib.  The block-Schur equivariant projector (:mod:`softeq.projectors`) works in these bases.

``surrogate_schur`` is the reference code's invariant basis (docs/fidelity.md): the real Schur
vectors of a square generator sorted by a per-block surrogate of the eigenvalue modulus.  For a
non-normal generator (the bilinear C_n grid rotation, n not dividing 4) these are not singular
vectors, so its filters are not exactly invariant at b = 0; it exists to reproduce the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.sparse import coo_matrix, csr_matrix, sparray, spmatrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "ZERO_TOL",
    "SchurForm",
    "Spectrum",
    "block_spectrum",
    "component_labels",
    "constraint_svd",
    "real_schur",
    "surrogate_schur",
]

ZERO_TOL = 1e-5
"""Singular values below this count as exact zeros (the null space), as in the reference code."""


@dataclass
class _Blocks:
    """Right singular vectors of a block-separable operator, one batch per block size."""

    columns: list[np.ndarray]  # (count, s) coordinates of each block
    vectors: list[np.ndarray]  # (count, s, s): V of each block, columns = singular vectors
    positions: list[np.ndarray]  # (count, s): index of each vector in the ascending order


@dataclass
class Spectrum:
    """Singular values ``sigma`` (ascending) and right singular vectors of a constraint operator.

    ``projector(weights)`` assembles sum_i weights[i] v_i v_i^T without forming V densely when the
    operator is block-separable.
    """

    sigma: np.ndarray
    size: int
    _dense: np.ndarray | None = None  # columns in ascending order
    _blocks: _Blocks | None = field(default=None, repr=False)

    @property
    def sigma_max(self) -> float:
        return float(self.sigma[-1]) if self.sigma.size else 0.0

    @property
    def null_dim(self) -> int:
        return int(np.count_nonzero(self.sigma < ZERO_TOL))

    @property
    def vectors(self) -> np.ndarray:
        """Dense V (size x size), column i the singular vector of ``sigma[i]``."""
        if self._dense is None:
            dense = np.zeros((self.size, self.size))
            for cols, vecs, pos in zip(
                self._blocks.columns, self._blocks.vectors, self._blocks.positions, strict=True
            ):
                dense[cols[:, :, None], pos[:, None, :]] = vecs
            self._dense = dense
        return self._dense

    def columns(self, positions: np.ndarray) -> np.ndarray:
        """The singular vectors at ascending ``positions``, as an (N, len(positions)) array,
        without forming V densely when the operator is block-separable."""
        positions = np.asarray(positions, dtype=np.int64)
        if self._dense is not None or self._blocks is None:
            return self.vectors[:, positions]
        out = np.zeros((self.size, positions.size))
        slot = np.full(self.sigma.size, -1)
        slot[positions] = np.arange(positions.size)
        for cols, vecs, pos in zip(
            self._blocks.columns, self._blocks.vectors, self._blocks.positions, strict=True
        ):
            member, which = np.nonzero(slot[pos] >= 0)
            out[cols[member], slot[pos[member, which]][:, None]] = vecs[member, :, which]
        return out

    def projector(self, weights: np.ndarray) -> np.ndarray:
        """P = V diag(weights) V^T, ``weights`` aligned with the ascending ``sigma``."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != self.sigma.shape:
            raise ValueError(f"expected {self.sigma.shape[0]} weights, got {weights.shape}")
        if self._dense is not None or self._blocks is None:
            v = self.vectors
            return (v * weights) @ v.T
        out = np.zeros((self.size, self.size))
        for cols, vecs, pos in zip(
            self._blocks.columns, self._blocks.vectors, self._blocks.positions, strict=True
        ):
            block = (vecs * weights[pos][:, None, :]) @ vecs.transpose(0, 2, 1)  # batched BLAS
            out[cols[:, :, None], cols[:, None, :]] = block
        return out


def _sorted_svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values (padded with zeros to the column count) and V, both ascending.  A tall
    matrix needs no square U: the economy SVD already has every right singular vector."""
    _, s, vt = np.linalg.svd(matrix, full_matrices=matrix.shape[-2] < matrix.shape[-1])
    n = matrix.shape[-1]
    sigma = np.zeros((*matrix.shape[:-2], n))
    sigma[..., : s.shape[-1]] = s
    order = np.argsort(sigma, axis=-1, kind="stable")
    sigma = np.take_along_axis(sigma, order, axis=-1)
    v = np.swapaxes(vt, -1, -2)
    v = np.take_along_axis(v, order[..., None, :], axis=-1)
    return sigma, v


def constraint_svd(operators: list[np.ndarray] | np.ndarray) -> Spectrum:
    """Ascending SVD of the stacked constraint operator C = [C_1; C_2; ...] (each m_i x N)."""
    if isinstance(operators, np.ndarray):
        operators = [operators]
    stacked = np.vstack([np.asarray(op, dtype=np.float64) for op in operators])
    n = stacked.shape[1]
    pattern = csr_matrix(stacked != 0)
    n_blocks, labels = connected_components(pattern.T @ pattern, directed=False)
    if n_blocks == 1:
        sigma, v = _sorted_svd(stacked)
        return Spectrum(sigma, n, _dense=v)
    return block_spectrum(stacked, labels)


def component_labels(stacked: sparray | spmatrix) -> np.ndarray:
    """Label the columns of a sparse operator so that no row touches two labels: the connected
    components of the bipartite row-column graph of its non-zeros (never forms C^T C)."""
    pattern = csr_matrix(stacked)
    pattern.eliminate_zeros()
    rows, cols = pattern.shape
    coo = pattern.tocoo()
    graph = coo_matrix(
        (np.ones(coo.nnz, dtype=np.int8), (coo.row, rows + coo.col)), shape=(rows + cols,) * 2
    )
    _, labels = connected_components(graph, directed=False)
    _, dense_labels = np.unique(labels[rows:], return_inverse=True)
    return dense_labels


def block_spectrum(stacked: np.ndarray | sparray | spmatrix, labels: np.ndarray) -> Spectrum:
    """Ascending SVD of a block-separable operator (dense or sparse): each block of columns
    ``labels == l`` is decomposed on its own, batched by size, and the spectra are merged."""
    pattern = csr_matrix(stacked != 0) if isinstance(stacked, np.ndarray) else csr_matrix(stacked)
    n = pattern.shape[1]
    n_blocks = int(labels.max()) + 1 if labels.size else 0
    nnz_rows = np.flatnonzero(np.diff(pattern.indptr))
    row_labels = labels[pattern.indices[pattern.indptr[nnz_rows]]]
    cols_by_label = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])
    row_order = np.argsort(row_labels, kind="stable")
    row_counts = np.bincount(row_labels, minlength=n_blocks)
    rows_by_label = np.split(nnz_rows[row_order], np.cumsum(row_counts)[:-1])
    groups: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    for rows, cols in zip(rows_by_label, cols_by_label, strict=True):
        groups.setdefault((rows.size, cols.size), []).append((rows, cols))
    sigmas, columns, vectors = [], [], []
    sparse = not isinstance(stacked, np.ndarray)
    for (n_rows, size), members in groups.items():
        if n_rows == 0:
            sigma = np.zeros((len(members), size))
            v = np.broadcast_to(np.eye(size), (len(members), size, size)).copy()
        elif sparse:  # tall sparse blocks: eigh of the small Gram matrix C_l^T C_l
            sigma, v = _sorted_gram_eigh(
                np.stack([_gram(stacked, rows, cols) for rows, cols in members])
            )
        else:
            sigma, v = _sorted_svd(
                np.stack([stacked[np.ix_(rows, cols)] for rows, cols in members])
            )
        sigmas.append(sigma)
        columns.append(np.stack([cols for _, cols in members]))
        vectors.append(v)
    flat = np.concatenate([s.ravel() for s in sigmas])
    order = np.argsort(flat, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    positions, at = [], 0
    for s in sigmas:
        positions.append(rank[at : at + s.size].reshape(s.shape))
        at += s.size
    return Spectrum(flat[order], n, _blocks=_Blocks(columns, vectors, positions))


def _gram(stacked, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    block = csr_matrix(stacked)[rows][:, cols]
    return (block.T @ block).toarray()


def _sorted_gram_eigh(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigma = sqrt(eig(C^T C)) and V, ascending: the SVD's sigma and V of a tall C, to
    sqrt(eps) sigma_max in sigma (far below ZERO_TOL) and to eps / gap in V."""
    values, v = np.linalg.eigh(gram)
    return np.sqrt(np.clip(values, 0.0, None)), v


@dataclass(frozen=True)
class SchurForm:
    """D = Z T Z^T with T = blockdiag(blocks); block i covers Z[:, starts[i] : starts[i] + sizes[i]]
    and has eigenvalue ``real[i] + 1j * imag[i]`` (imag > 0 for 2 x 2 blocks a I + b J)."""

    Z: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    real: np.ndarray
    imag: np.ndarray

    def block_matrix(self) -> np.ndarray:
        """T, rebuilt from the block eigenvalues."""
        t = np.zeros_like(self.Z)
        for start, size, a, b in zip(self.starts, self.sizes, self.real, self.imag, strict=True):
            if size == 1:
                t[start, start] = a
            else:
                t[start : start + 2, start : start + 2] = [[a, -b], [b, a]]
        return t


def real_schur(matrix: np.ndarray, tol: float = 1e-9) -> SchurForm:
    """Canonical real Schur form of a normal matrix; raises if it is not normal.

    Canonical: each 2 x 2 block is exactly a I + b J with b > 0 (a sign flip of one Schur vector
    fixes the orientation) and blocks are sorted by (a, b).
    """
    d = np.asarray(matrix, dtype=np.float64)
    scale = max(np.abs(d).max(), 1.0)
    if np.abs(d @ d.T - d.T @ d).max() > tol * scale**2:
        raise ValueError(
            "operator is not normal: the block-Schur path needs a normal generator "
            "(orthogonal actions and their differences); use the dense Kronecker-SVD path"
        )
    t, z = scipy.linalg.schur(d, output="real")
    n = d.shape[0]
    starts, sizes, real, imag = [], [], [], []
    i = 0
    while i < n:
        if i + 1 < n and abs(t[i + 1, i]) > tol * scale:
            a = (t[i, i] + t[i + 1, i + 1]) / 2
            b = (t[i + 1, i] - t[i, i + 1]) / 2
            if b < 0:
                z[:, i + 1] *= -1
                b = -b
            starts.append(i)
            sizes.append(2)
            real.append(a)
            imag.append(b)
            i += 2
        else:
            starts.append(i)
            sizes.append(1)
            real.append(t[i, i])
            imag.append(0.0)
            i += 1
    order = np.lexsort((np.asarray(imag), np.asarray(real)))
    columns = np.concatenate([np.arange(starts[j], starts[j] + sizes[j]) for j in order])
    z = z[:, columns]
    sizes_sorted = np.asarray(sizes)[order]
    starts_sorted = np.concatenate([[0], np.cumsum(sizes_sorted)[:-1]])
    return SchurForm(
        z, starts_sorted, sizes_sorted, np.asarray(real)[order], np.asarray(imag)[order]
    )


def surrogate_schur(matrix: np.ndarray) -> Spectrum:
    """The reference code's sorted real-Schur basis of a square generator D, as a Spectrum.

    As the reference does it (docs/fidelity.md): D in float32, its real Schur form D = Z T Z^T
    (LAPACK, unordered); a 2 x 2 block whose upper off-diagonal entry is negative has its two
    Schur vectors swapped; a 1 x 1 block gets the surrogate |T_ii|, a 2 x 2 block
    sqrt(T_ii^2 + T_i+1,i^2) for both of its vectors; the vectors are sorted ascending by
    surrogate with numpy's default (unstable) sort, ties included.  ``sigma`` holds the
    surrogates: they equal the singular values only where D is normal.
    """
    d = np.asarray(matrix, dtype=np.float32)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"surrogate_schur needs a square matrix, got shape {d.shape}")
    t, z = scipy.linalg.schur(d, output="real")
    n = d.shape[0]
    i = 0
    while i < n - 1:  # canonical 2 x 2 blocks: a swap makes the upper off-diagonal >= 0
        if abs(t[i + 1, i]) > 1e-8:
            if t[i, i + 1] < 0:
                t[i : i + 2, i : i + 2] = t[i : i + 2, i : i + 2][::-1, ::-1].copy()
                z[:, i : i + 2] = z[:, i : i + 2][:, ::-1].copy()
            i += 2
        else:
            i += 1
    scalar = np.append(np.abs(np.diagonal(t, -1)) <= 1e-5, True)  # 1 x 1 block starts here
    values = np.empty(n, dtype=np.float32)
    i = 0
    while i < n:
        if scalar[i]:
            values[i] = abs(t[i, i])
            i += 1
        else:
            values[i : i + 2] = np.sqrt(t[i, i] ** 2 + t[i + 1, i] ** 2)
            i += 2
    order = np.argsort(values)  # the default kind on float32, as the reference sorts
    return Spectrum(values[order].astype(np.float64), n, _dense=z[:, order].astype(np.float64))
