"""Group actions and generators: exact spectra, permutations and representation properties."""

import math

import numpy as np
import pytest
import torch

from softeq.groups import (
    PairRep,
    flip_matrix,
    grid_generators,
    pair_action,
    pair_generators,
    parse_group,
    rotation_matrix_bilinear,
    rotation_matrix_rot90,
)
from softeq.spectral import constraint_svd


@pytest.mark.parametrize("k", [3, 7, 16])
def test_c4_null_space_and_singular_values(k):
    (d,) = grid_generators("C4", k)
    spectrum = constraint_svd([d.T])
    assert spectrum.null_dim == math.ceil(k * k / 4)
    nonzero = np.unique(np.round(spectrum.sigma[spectrum.null_dim :], 12))
    np.testing.assert_allclose(nonzero, [2 * math.sqrt(2) / math.pi, 4 / math.pi], atol=1e-12)
    # the block-separable SVD agrees with a plain dense one
    dense = np.sort(np.linalg.svd(d.T, compute_uv=False))
    np.testing.assert_allclose(spectrum.sigma, dense, atol=1e-12)


@pytest.mark.parametrize("k", [3, 4, 8])
def test_rot90_matrix_matches_torch_rot90(k):
    x = torch.randn(k, k, dtype=torch.float64)
    expected = torch.rot90(x, 1, dims=(0, 1)).reshape(-1).numpy()
    np.testing.assert_array_equal(rotation_matrix_rot90(k) @ x.reshape(-1).numpy(), expected)
    np.testing.assert_array_equal(flip_matrix(k) @ x.reshape(-1).numpy(), x.flip(1).reshape(-1))


@pytest.mark.parametrize("k", [3, 5, 6])
def test_bilinear_rotation_is_exact_at_quarter_turns(k):
    for quarter in range(4):
        np.testing.assert_allclose(
            rotation_matrix_bilinear(k, quarter * math.pi / 2),
            rotation_matrix_rot90(k, quarter),
            atol=1e-12,
        )


def test_bilinear_rotation_is_stochastic_and_keeps_constants():
    r = rotation_matrix_bilinear(9, 2 * math.pi / 18)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)  # rows are interpolation weights
    assert (r >= 0).all()
    (d,) = grid_generators("C18", 9)
    assert np.abs(d @ np.ones(81)).max() < 1e-12  # constants are invariant


def test_dihedral_stacks_rotation_and_flip():
    gens = grid_generators("D4", 5)
    assert len(gens) == 2
    spectrum = constraint_svd([g.T for g in gens])
    # D4 orbits on a 5x5 grid: the centre, 2 axis and 2 diagonal orbits of 4, 1 orbit of 8
    assert spectrum.null_dim == 6


def test_group_names():
    assert parse_group("C18").order == 18
    assert parse_group("D4").has_flip
    assert parse_group("SO2").continuous
    for bad in ["C0", "c4", "SO", "D", "rot", "O0"]:
        with pytest.raises(ValueError, match="unknown group"):
            parse_group(bad)
    assert parse_group("SO3").kind == "matrix" and parse_group("O5").lie_dimension == 10
    for planar in (grid_generators, pair_generators):  # a matrix group has no planar action
        with pytest.raises(ValueError, match="matrix group"):
            planar("SO3", 5) if planar is grid_generators else planar("SO3", PairRep((1,)))
    with pytest.raises(ValueError, match="exact"):
        grid_generators("C8", 5, "exact")
    with pytest.raises(ValueError, match="pair features"):
        grid_generators("SO2", 5)


def test_so2_pair_generator_exponentiates_to_the_action():
    import scipy.linalg

    rep = PairRep((1, 2, 0, 3))
    (gen,) = pair_generators("SO2", rep)
    for angle in (0.3, -1.7, 2.9):
        np.testing.assert_allclose(
            scipy.linalg.expm(angle * gen), pair_action("SO2", rep, angle), atol=1e-12
        )


def test_cn_pair_action_is_a_representation():
    rep = PairRep((1, 2, 3))
    theta = 2 * math.pi / 5
    h = pair_action("C5", rep, theta)
    np.testing.assert_allclose(np.linalg.matrix_power(h, 5), np.eye(6), atol=1e-12)
    (d,) = pair_generators("C5", rep)
    np.testing.assert_allclose(d, (h - np.eye(6)) / theta, atol=1e-12)
