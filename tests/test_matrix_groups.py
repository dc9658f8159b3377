"""Matrix groups, their representations, and soft projectors of maps between representations:
equivariance checked under random group elements, the bound against measured residuals, and the
projector against a dense SVD of the stacked constraint built independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from softeq.filters import filter_weights
from softeq.groups import parse_group
from softeq.matrix_groups import SO, Lorentz, O, S, Z, matrix_group, product
from softeq.projectors.reps import RepMapProjector
from softeq.rep_spectral import map_spectrum
from softeq.reps import Scalar, T, V, parse_rep
from softeq.spectral import ZERO_TOL

# (group, in rep, out rep): tensors up to order 2, mixed sums, duals and a product group
CASES = [
    ("SO3", "V+V**2", "V*V.T"),
    ("SO3", "V**2", "2V+S"),
    ("O5", "2V", "V**2+S"),
    ("O5", "V**2", "V**2"),
    ("Lorentz", "V+S", "V**2"),
    ("Lorentz", "V.T", "V"),
    ("SO3xZ3", "V**2", "V"),
    ("S4", "V**2", "V+S"),
]


def _scale(group_name: str) -> float:
    return 0.3 if group_name == "Lorentz" else 1.0  # boosts grow tensors fast


def _dense_constraint(in_rep, out_rep) -> np.ndarray:
    """C built from the definition X D_in - D_out X applied to every basis matrix (row-major
    vec), one block per generator: independent of the Kronecker formula in the package."""
    group = in_rep.group
    d_out, d_in = out_rep.dim, in_rep.dim
    gens = [(a.toarray(), b.toarray()) for a, b in zip(in_rep.lie(), out_rep.lie(), strict=True)]
    for h, theta in zip(group.discrete, group.discrete_angles, strict=True):
        gens.append(
            ((in_rep.rho(h) - np.eye(d_in)) / theta, (out_rep.rho(h) - np.eye(d_out)) / theta)
        )
    blocks = []
    for g_in, g_out in gens:
        block = np.zeros((d_out * d_in, d_out * d_in))
        for k in range(d_out * d_in):
            basis = np.zeros(d_out * d_in)
            basis[k] = 1.0
            x = basis.reshape(d_out, d_in)
            block[:, k] = (x @ g_in - g_out @ x).ravel()
        blocks.append(block)
    return np.vstack(blocks)


def _projector_matrix(projector: RepMapProjector) -> np.ndarray:
    d_out, d_in = projector.shape
    eye = torch.eye(d_out * d_in, dtype=torch.float64).reshape(-1, d_out, d_in)
    return np.stack([projector.apply(e).reshape(-1).numpy() for e in eye], axis=1)


# ---- groups and representations ------------------------------------------------------------


@pytest.mark.parametrize("name", ["SO3", "O5", "Lorentz", "S4", "Z5", "SO3xZ3", "SO2", "O1"])
def test_sampled_elements_lie_in_the_group(name):
    group = matrix_group(name)
    g = group.sample(np.random.default_rng(0), _scale(name))
    if name.startswith(("SO", "O")) and "x" not in name:
        np.testing.assert_allclose(g @ g.T, np.eye(group.n), atol=1e-10)
        if name.startswith("SO"):
            assert np.linalg.det(g) == pytest.approx(1.0)
    if name == "Lorentz":
        eta = np.diag([1.0, -1.0, -1.0, -1.0])
        np.testing.assert_allclose(g.T @ eta @ g, eta, atol=1e-9)
    if name in ("S4", "Z5"):
        assert set(np.unique(g)) <= {0.0, 1.0} and np.all(g.sum(0) == 1)


def test_generator_counts_and_names():
    assert matrix_group("O5").lie_algebra.shape == (10, 5, 5)
    assert matrix_group("O5").discrete.shape == (1, 5, 5)
    assert Lorentz().lie_algebra.shape == (6, 4, 4) and Lorentz().discrete.shape[0] == 2
    assert S(5).discrete_angles == pytest.approx((math.pi, 2 * math.pi / 5))
    assert Z(6).discrete_angles == pytest.approx((2 * math.pi / 6,))
    prod = product(SO(3), Z(2))
    assert prod.name == "SO3xZ2" and prod.n == 5 and prod.lie_algebra.shape[0] == 3
    assert matrix_group("SO3xZ2").digest == prod.digest
    assert O(3).digest != SO(3).digest
    assert parse_group("O5").kind == "matrix" and parse_group("SO2").kind == "SO2"
    for bad in ("O0", "SO", "Q3", "O5x", "lorentz"):
        with pytest.raises(ValueError, match="group"):
            matrix_group(bad)


@pytest.mark.parametrize("text", ["V", "V.T", "V**2", "V*V.T", "T(2,1)", "2V+S", "(V+S)**2"])
@pytest.mark.parametrize("name", ["SO3", "Lorentz", "SO3xZ3"])
def test_lie_action_is_the_derivative_of_the_group_action(name, text):
    """drho(A) = d/dt rho(exp(t A)) at 0 (central difference), and rho(h) for discrete h: the
    Kronecker sums and duals of reps.py against the group action computed by rho()."""
    group = matrix_group(name)
    rep = parse_rep(text, group)
    t = 1e-5
    for a, d_rep in zip(group.lie_algebra, rep.lie(), strict=True):
        plus, minus = rep.rho(scipy.linalg.expm(t * a)), rep.rho(scipy.linalg.expm(-t * a))
        np.testing.assert_allclose(d_rep.toarray(), (plus - minus) / (2 * t), atol=1e-6)
    for h, rho_h in zip(group.discrete, rep.discrete(), strict=True):
        np.testing.assert_allclose(rho_h.toarray(), rep.rho(h))


def test_rep_algebra_and_layout():
    group = matrix_group("O5")
    rep = parse_rep("3S+2V+V**2", group)
    assert rep.dim == 3 + 10 + 25 and rep.key == "3S+2V+V**2"
    assert [(r.key, m) for r, m in rep.blocks()] == [("S", 3), ("V", 2), ("V**2", 1)]
    assert parse_rep("T(2,1)", group).key == (V(group) ** 2 * V(group).T).key
    assert T(group, 0, 0).is_scalar and (Scalar(group) * Scalar(group)).is_scalar
    assert parse_rep("(V*V).T", group).key == "V.T**2"
    g = group.sample(np.random.default_rng(1))
    x = np.random.default_rng(2).normal(size=10)
    np.testing.assert_allclose(parse_rep("2V", group).rho(g) @ x, np.r_[g @ x[:5], g @ x[5:]])
    for bad in ("", "V+", "2", "W", "V**", "(V", "V.X", "0V"):
        with pytest.raises(ValueError, match="representation"):
            parse_rep(bad, group)


# ---- projectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "rep_in", "rep_out"), CASES)
def test_exact_projection_is_equivariant_under_group_elements(name, rep_in, rep_out):
    group = matrix_group(name)
    a, b = parse_rep(rep_in, group), parse_rep(rep_out, group)
    weight = torch.randn(b.dim, a.dim, dtype=torch.float64, generator=torch.manual_seed(0))
    projected = RepMapProjector(a, b, 0.0).apply(weight).numpy()
    rng = np.random.default_rng(3)
    for _ in range(4):
        g = group.sample(rng, _scale(name))
        lhs, rhs = projected @ a.rho(g), b.rho(g) @ projected
        assert np.abs(lhs - rhs).max() <= 1e-5 * max(1.0, np.abs(rhs).max())
    identity = RepMapProjector(a, b, 1.0, filter="threshold").apply(weight)
    torch.testing.assert_close(identity, weight, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "rep_in", "rep_out"), CASES)
def test_projector_equals_dense_svd_of_the_stacked_operator(name, rep_in, rep_out):
    group = matrix_group(name)
    a, b = parse_rep(rep_in, group), parse_rep(rep_out, group)
    dense = _dense_constraint(a, b)
    _, s, vt = np.linalg.svd(dense, full_matrices=True)
    sigma = np.zeros(dense.shape[1])
    sigma[: s.size] = s
    order = np.argsort(sigma, kind="stable")
    sigma, v = sigma[order], vt.T[:, order]
    for softness in (0.0, 0.3, 1.0):
        weights = filter_weights(sigma, softness, "shrink").weights
        expected = (v * weights) @ v.T
        got = _projector_matrix(RepMapProjector(a, b, softness))
        np.testing.assert_allclose(got, expected, atol=1e-6)
    null = int(np.sum(sigma < ZERO_TOL))
    assert RepMapProjector(a, b, 0.0).null_dim == null


@pytest.mark.parametrize("filter", ["shrink", "threshold", "rank-hard", "rank"])
@pytest.mark.parametrize(("name", "rep_in", "rep_out"), CASES[::2])
def test_measured_residual_within_the_bound(name, rep_in, rep_out, filter):
    """||C vec P_b(W)|| <= b_eff sigma_max ||W|| for 11 values of b (docs/method.md §8)."""
    group = matrix_group(name)
    a, b = parse_rep(rep_in, group), parse_rep(rep_out, group)
    weight = torch.randn(b.dim, a.dim, dtype=torch.float64, generator=torch.manual_seed(1))
    norm = float(weight.norm())
    previous = -1.0
    for softness in np.linspace(0.0, 1.0, 11):
        projector = RepMapProjector(a, b, float(softness), filter=filter)
        measured = projector.residual(projector.apply(weight)) / norm
        assert measured <= projector.b_eff * projector.sigma_max * (1 + 1e-9) + 1e-12
        if filter == "shrink":  # C P_b W = b C W: the residual grows linearly in b
            assert measured >= previous
            previous = measured


def test_block_structure_matches_the_whole_map():
    """A map between sums projects block by block: the same as the dense projector of the whole
    (2V + S) -> (V**2 + 2V) map, and equal blocks share one projector."""
    group = matrix_group("SO3")
    a, b = parse_rep("2V+S", group), parse_rep("V**2+2V", group)
    dense = _dense_constraint(a, b)
    _, s, vt = np.linalg.svd(dense)
    null = vt[s.size :].T if s.size < dense.shape[1] else np.zeros((dense.shape[1], 0))
    null = np.hstack([null, vt[: s.size][s < ZERO_TOL].T])
    np.testing.assert_allclose(
        _projector_matrix(RepMapProjector(a, b, 0.0)), null @ null.T, atol=1e-8
    )


def test_large_maps_use_the_null_space_without_the_dense_operator():
    """V**3 -> V**3 of O(5): 15,625 columns; LOBPCG blocks, exact and equivariant at b = 0,
    and a filter that needs the full spectrum at such a size raises, saying why."""
    group = matrix_group("O5")
    rep = parse_rep("V**3", group)
    spectrum = map_spectrum(rep, rep, full=False)
    assert spectrum.method == "null" and spectrum.largest_block > 400
    assert spectrum.null_dim == 15  # the 15 pairings of six indices: O(5) invariants of V^(x)6
    weight = torch.randn(rep.dim, rep.dim, dtype=torch.float64, generator=torch.manual_seed(2))
    projector = RepMapProjector(rep, rep, 0.0)
    projected = projector.apply(weight).numpy()
    g = group.sample(np.random.default_rng(4))
    r = rep.rho(g)
    assert np.abs(projected @ r - r @ projected).max() < 1e-6
    soft = RepMapProjector(rep, rep, 0.5)
    assert soft.residual(soft.apply(weight)) <= soft.b_eff * soft.sigma_max * float(weight.norm())
    with pytest.raises(ValueError, match="full spectrum"):
        RepMapProjector(rep, rep, 0.5, filter="threshold", dense_limit=1000)


def test_unit_difference_is_the_reference_scaling():
    """discrete_difference='unit' divides rho(h) - I by 1 (the reference), 'angle' by pi for a
    reflection: the null spaces agree, the reflection block's singular values differ by pi."""
    group = matrix_group("O3")
    rep = V(group)
    angle = map_spectrum(rep, rep, "angle").spectrum
    unit = map_spectrum(rep, rep, "unit").spectrum
    assert angle.null_dim == unit.null_dim == 1
    assert unit.sigma_max >= angle.sigma_max
    with pytest.raises(ValueError, match="discrete_difference"):
        RepMapProjector(rep, rep, 0.0, discrete_difference="half")


def test_mismatched_groups_and_shapes_raise():
    a, b = V(matrix_group("SO3")), V(matrix_group("O3"))
    with pytest.raises(ValueError, match="SO3"):
        RepMapProjector(a, b, 0.0)
    projector = RepMapProjector(a, a, 0.0)
    with pytest.raises(ValueError, match="shape"):
        projector.apply(torch.zeros(3, 4))
