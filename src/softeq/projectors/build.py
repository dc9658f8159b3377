"""Building projectors once per key: cached in memory and, given a folder, in files.

Two exact constructions of the equivariant projector: ``dense`` (SVD of L, the reference,
O(d^6)) and ``schur`` (block-Schur, docs/method.md §3, O(d^3)): in the real Schur bases of D_X
and D_Y, L acts block pair by block pair with singular values |lambda_in - lambda_out| on the
commutant part of a 2 x 2 weight block and |lambda_in - conj(lambda_out)| on its anti-commutant
part.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from softeq.filters import FilterResult, check_softness, filter_weights, resolve_filter
from softeq.groups import (
    PairRep,
    default_grid_operator,
    grid_generators,
    pair_generators,
    parse_group,
)
from softeq.projectors.base import EquivariantProjector, InvariantProjector, Projector, ProjectorKey
from softeq.projectors.files import load_projector, save_projector
from softeq.spectral import ZERO_TOL, constraint_svd, real_schur, surrogate_schur

__all__ = [
    "BASES",
    "clear_cache",
    "equivariant_projector",
    "invariant_projector",
    "kronecker_operator",
]

BASES = ("svd", "schur")
"""Bases of the invariant grid filters: ``svd`` (softeq's exact method) and ``schur`` (the
reference code's sorted real-Schur vectors, docs/fidelity.md)."""


_CACHE: dict[ProjectorKey, Projector] = {}


def clear_cache() -> None:
    """Forget every projector built in this process."""
    _CACHE.clear()


def _cached(key: ProjectorKey, build, cache_dir: str | Path | None):
    if key in _CACHE:
        return _CACHE[key]
    path = Path(cache_dir) / f"{key.slug()}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        projector = load_projector(path)
        if projector.key != key:
            raise ValueError(f"{path}: holds projector {projector.key}, expected {key}")
    else:
        projector = build()
        if path is not None:
            save_projector(projector, path)
    _CACHE[key] = projector
    return projector


def _check_filter(filter: str, softness: float, hard_mask: bool) -> tuple[str, float]:
    return resolve_filter(filter, hard_mask), check_softness(softness)


def invariant_projector(
    group: str,
    size: int,
    softness: float,
    filter: str = "shrink",
    hard_mask: bool = False,
    operator: str | None = None,
    side: str = "weight",
    cache_dir: str | Path | None = None,
    basis: str = "svd",
) -> InvariantProjector:
    """The soft invariant projector on ``size`` x ``size`` grids for ``group`` (cached per key).

    ``operator`` picks the grid action for C_n (``exact`` permutation, default where n divides 4;
    ``bilinear`` otherwise).  ``side`` is ``weight`` for kernel slices and ``data`` for grid
    functions such as positional embeddings.  ``basis``: ``svd`` (exact) or ``schur``, the
    reference's sorted Schur vectors of D (both sides alike, as the reference builds one filter),
    for the ``rank`` / ``rank-hard`` filters and C_n only; not exactly invariant at b = 0 where
    D is not normal (docs/fidelity.md).  The stored constraint is the side's, as for ``svd``.
    """
    g = parse_group(group)
    filter, b = _check_filter(filter, softness, hard_mask)
    if side not in ("weight", "data"):
        raise ValueError(f"side must be 'weight' or 'data', got {side!r}")
    if size < 1:
        raise ValueError(f"grid size must be positive, got {size}")
    _check_basis(basis, g, filter)
    operator = operator or default_grid_operator(g)
    key = ProjectorKey(
        "invariant", g.name, f"{size}x{size}", filter, b, operator, side, "", _key_basis(basis)
    )

    def build() -> InvariantProjector:
        generators = grid_generators(g, size, operator)
        blocks = [d.T if side == "weight" else d for d in generators]
        if basis == "schur":
            spectrum = surrogate_schur(generators[0])
            result = _schur_weights(spectrum.sigma, b, filter)
        else:
            spectrum = constraint_svd(blocks)
            result = filter_weights(spectrum.sigma, b, filter)
        return InvariantProjector(
            key,
            spectrum.projector(result.weights),
            spectrum.sigma,
            np.vstack(blocks),
            result.b_eff,
            result.kept,
        )

    return _cached(key, build, cache_dir)


def _check_basis(basis: str, group, filter: str) -> None:
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    if basis == "svd":
        return
    if group.kind != "cyclic":
        raise ValueError(
            f"basis 'schur' (the reference's sorted Schur vectors) is built for C_n rotations "
            f"only, not {group.name}"
        )
    if filter not in ("rank", "rank-hard"):
        raise ValueError(
            f"basis 'schur' serves the reference's rank rule (filters 'rank', 'rank-hard'); "
            f"filter {filter!r} needs singular values: use basis 'svd'"
        )


def _key_basis(basis: str) -> str:
    """The key's basis field: empty for ``svd``, so the keys and files of softeq's exact
    projectors stay as they were."""
    return "" if basis == "svd" else basis


def _schur_weights(sigma: np.ndarray, b: float, filter: str) -> FilterResult:
    """The rank rule on the Schur surrogates; with no value below ZERO_TOL the reference keeps
    one more direction (``1 + int((N - 1) b)``) than softeq's rank filter (docs/fidelity.md)."""
    result = filter_weights(sigma, b, filter)
    if b < 1.0 and sigma.size and sigma[0] >= ZERO_TOL:
        weights = result.weights.copy()
        weights[result.kept] = 1.0
        b_eff = float(np.max(weights * sigma) / sigma[-1])
        result = FilterResult(weights, b_eff, int(np.count_nonzero(weights == 1.0)))
    return result


def _digest(*matrices: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for group in matrices:
        for m in group:
            h.update(np.ascontiguousarray(m, dtype=np.float64).tobytes())
            h.update(b"|")
        h.update(b"#")
    return h.hexdigest()


def equivariant_projector(
    group: str,
    in_rep: PairRep | list[np.ndarray],
    out_rep: PairRep | list[np.ndarray],
    softness: float,
    filter: str = "shrink",
    hard_mask: bool = False,
    method: str = "schur",
    cache_dir: str | Path | None = None,
) -> EquivariantProjector:
    """The soft equivariant projector for maps from ``in_rep`` to ``out_rep`` (cached per key).

    Representations are :class:`PairRep` (their generators follow from ``group``) or explicit
    lists of generator matrices, one per group generator.  ``method``: ``schur`` (exact, O(d^3),
    needs one normal generator) or ``dense`` (SVD of the Kronecker operator, small sizes only).
    """
    g = parse_group(group)
    filter, b = _check_filter(filter, softness, hard_mask)
    if method not in ("schur", "dense"):
        raise ValueError(f"method must be 'schur' or 'dense', got {method!r}")
    in_gens = pair_generators(g, in_rep) if isinstance(in_rep, PairRep) else list(in_rep)
    out_gens = pair_generators(g, out_rep) if isinstance(out_rep, PairRep) else list(out_rep)
    if len(in_gens) != len(out_gens) or not in_gens:
        raise ValueError("input and output need the same, non-zero number of generators")
    d_in, d_out = in_gens[0].shape[0], out_gens[0].shape[0]
    shape = (
        f"{in_rep.key()}->{out_rep.key()}"
        if isinstance(in_rep, PairRep) and isinstance(out_rep, PairRep)
        else f"{d_in}->{d_out}"
    )
    digest = _digest(in_gens, out_gens)
    key = ProjectorKey("equivariant", g.name, shape, filter, b, method, "", digest)

    def build() -> EquivariantProjector:
        if method == "dense":
            arrays, sigma, result = _dense_equivariant(in_gens, out_gens, b, filter)
        else:
            if len(in_gens) != 1:
                raise ValueError(
                    f"{g.name} has {len(in_gens)} generators; the block-Schur path needs one "
                    "(use method='dense' for small dihedral layers)"
                )
            arrays, sigma, result = _schur_equivariant(in_gens[0], out_gens[0], b, filter)
        return EquivariantProjector(
            key, arrays, sigma, in_gens, out_gens, result.b_eff, result.kept
        )

    return _cached(key, build, cache_dir)


def kronecker_operator(in_gens: list[np.ndarray], out_gens: list[np.ndarray]) -> np.ndarray:
    """The stacked L_i = D_X,i^T (x) I - I (x) D_Y,i acting on column-major vec(W)."""
    d_in, d_out = in_gens[0].shape[0], out_gens[0].shape[0]
    return np.vstack(
        [
            np.kron(dx.T, np.eye(d_out)) - np.kron(np.eye(d_in), dy)
            for dx, dy in zip(in_gens, out_gens, strict=True)
        ]
    )


def _dense_equivariant(in_gens, out_gens, b, filter):
    operator = kronecker_operator(in_gens, out_gens)
    _, s, vt = np.linalg.svd(operator, full_matrices=True)  # plain dense SVD: the reference
    sigma = np.zeros(operator.shape[1])
    sigma[: s.size] = s
    order = np.argsort(sigma, kind="stable")
    sigma, v = sigma[order], vt.T[:, order]
    result = filter_weights(sigma, b, filter)
    return {"matrix": (v * result.weights) @ v.T}, sigma, result


def _schur_equivariant(dx, dy, b, filter):
    """Block-Schur construction; see the module docstring and docs/method.md §3."""
    sx, sy = real_schur(dx), real_schur(dy)
    lam_x = sx.real + 1j * sx.imag  # one eigenvalue per block (the one with imag >= 0)
    lam_y = sy.real + 1j * sy.imag
    both_pairs = (sy.sizes[:, None] == 2) & (sx.sizes[None, :] == 2)
    sigma_c = np.abs(lam_x[None, :] - lam_y[:, None])  # commutant part, or the whole block
    sigma_a = np.abs(lam_x[None, :] - np.conj(lam_y)[:, None])  # anti-commutant part
    mult = sy.sizes[:, None] * sx.sizes[None, :]
    # every part of every block pair: (sigma, multiplicity, part index); parts sort by sigma
    part_sigma = np.concatenate([sigma_c.ravel(), sigma_a[both_pairs]])
    part_mult = np.concatenate(
        [np.where(both_pairs, 2, mult).ravel(), np.full(both_pairs.sum(), 2)]
    )
    order = np.argsort(part_sigma, kind="stable")
    sigma = np.repeat(part_sigma[order], part_mult[order])
    result = filter_weights(sigma, b, filter)
    # a part takes the largest weight of its directions (only `rank` can split a part)
    ends = np.cumsum(part_mult[order])
    part_weight = np.empty(part_sigma.size)
    part_weight[order] = np.maximum.reduceat(result.weights, ends - part_mult[order])
    f_c = part_weight[: sigma_c.size].reshape(sigma_c.shape)
    f_a = f_c.copy()
    f_a[both_pairs] = part_weight[sigma_c.size :]
    if filter.startswith("rank"):  # report what the kept parts actually give
        weights = np.repeat(part_weight[order], part_mult[order])
        kept = int(np.count_nonzero(weights == 1.0))
        b_eff = float(np.max(weights * sigma) / sigma[-1]) if sigma[-1] > 0 else 0.0
        result = FilterResult(weights, b_eff, kept)
    # expand block coefficients to entries: W_b = Z_y (alpha * A + beta * J_y^T A J_x) Z_x^T
    rows = np.repeat(np.arange(sy.sizes.size), sy.sizes)
    cols = np.repeat(np.arange(sx.sizes.size), sx.sizes)
    alpha = ((f_c + f_a) / 2)[np.ix_(rows, cols)]
    beta = ((f_c - f_a) / 2)[np.ix_(rows, cols)]
    arrays = {
        "z_in": sx.Z,
        "z_out": sy.Z,
        "zj_in": sx.Z @ _block_j(sx),
        "zj_out": sy.Z @ _block_j(sy),
        "alpha": alpha,
        "beta": beta,
    }
    return arrays, sigma, result


def _block_j(schur) -> np.ndarray:
    """blockdiag(J for 2 x 2 blocks, 1 for 1 x 1 blocks)."""
    out = np.zeros_like(schur.Z)
    for start, size in zip(schur.starts, schur.sizes, strict=True):
        if size == 1:
            out[start, start] = 1.0
        else:
            out[start : start + 2, start : start + 2] = [[0.0, -1.0], [1.0, 0.0]]
    return out
