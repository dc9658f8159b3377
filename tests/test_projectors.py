"""Projectors: exactness at b = 0, identity at b = 1, the guarantee, and the two exact paths."""

import itertools
import math
import pickle

import numpy as np
import pytest
import torch

from softeq.filters import FILTERS
from softeq.groups import PairRep, pair_action, pair_generators
from softeq.projectors import (
    clear_cache,
    equivariant_projector,
    invariant_projector,
    load_projector,
    save_projector,
)

FILTER_CASES = [(name, False) for name in FILTERS] + [("rank", True)]


@pytest.mark.parametrize(("name", "hard"), FILTER_CASES)
@pytest.mark.parametrize("k", [3, 4, 7, 16])
def test_b0_kernels_are_rot90_invariant(name, hard, k):
    projector = invariant_projector("C4", k, 0.0, name, hard)
    w = projector.apply(torch.randn(8, 3, k, k, dtype=torch.float64))
    for quarter in (1, 2, 3):
        torch.testing.assert_close(torch.rot90(w, quarter, (-2, -1)), w, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "hard"), FILTER_CASES)
@pytest.mark.parametrize("group", ["C4", "D4", "C8"])
def test_b1_is_identity(name, hard, group):
    projector = invariant_projector(group, 5, 1.0, name, hard)
    np.testing.assert_allclose(projector.matrix, np.eye(25), atol=1e-10)
    eq = equivariant_projector("SO2", PairRep((1, 2)), PairRep((1, 1, 3)), 1.0, name, hard)
    w = torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(eq.apply(w), w, atol=1e-10, rtol=0)


@pytest.mark.parametrize(("name", "hard"), FILTER_CASES)
@pytest.mark.parametrize(
    "build",
    [
        lambda b, f, h: invariant_projector("C4", 7, b, f, h),
        lambda b, f, h: invariant_projector("C18", 9, b, f, h),
        lambda b, f, h: invariant_projector("D4", 6, b, f, h, side="data"),
        lambda b, f, h: equivariant_projector("SO2", PairRep((1, 2, 1)), PairRep((1, 3)), b, f, h),
        lambda b, f, h: equivariant_projector("C7", PairRep((1, 2)), PairRep((1, 3, 2)), b, f, h),
    ],
    ids=["C4-grid", "C18-bilinear", "D4-data", "SO2-pairs", "C7-pairs"],
)
def test_measured_residual_never_exceeds_the_bound(build, name, hard):
    torch.manual_seed(0)
    measured, raw = [], None
    for b in np.linspace(0.0, 1.0, 11):
        projector = build(b, name, hard)
        if hasattr(projector, "grid"):  # one set of random weights for every b
            n = projector.grid
            if projector.key.side == "data":
                raw = torch.randn(4, n * n, 8, dtype=torch.float64) if raw is None else raw
                projected = projector.apply_tokens(raw)
            else:
                raw = torch.randn(16, 3, n, n, dtype=torch.float64) if raw is None else raw
                projected = projector.apply(raw)
        else:
            raw = torch.randn(*projector.shape, dtype=torch.float64) if raw is None else raw
            projected = projector.apply(raw)
        residual = projector.residual(projected) / float(raw.norm())
        assert residual <= projector.b_eff * projector.sigma_max + 1e-9, (b, residual)
        measured.append(residual)
    assert measured[0] < 1e-9  # b = 0 is exact
    assert measured[-1] > 1e-3  # b = 1 keeps the raw weight's residual
    if name in ("shrink", "threshold"):
        assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(measured))


@pytest.mark.parametrize("group", ["C4", "C18", "D4"])
@pytest.mark.parametrize("b", [0.0, 0.3, 0.7, 1.0])
def test_threshold_projectors_are_symmetric_and_idempotent(group, b):
    p = invariant_projector(group, 8, b, "threshold").matrix
    np.testing.assert_allclose(p, p.T, atol=1e-12)
    np.testing.assert_allclose(p @ p, p, atol=1e-10)
    w = torch.randn(PairRep((1, 2, 3)).dim, PairRep((1, 2)).dim, dtype=torch.float64)
    eq = equivariant_projector("SO2", PairRep((1, 2)), PairRep((1, 2, 3)), b, "threshold")
    torch.testing.assert_close(eq.apply(eq.apply(w)), eq.apply(w), atol=1e-10, rtol=0)


def _random_orthogonal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("group", ["SO2", "C5", "C12"])
@pytest.mark.parametrize("b", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("name", ["shrink", "threshold"])
@pytest.mark.parametrize("rotate_basis", [False, True])
def test_block_schur_agrees_with_dense_kronecker_svd(group, b, name, rotate_basis):
    rng = np.random.default_rng(3)
    rep_in, rep_out = PairRep((1, 2, 0, 3, 1)), PairRep((2, 1, 3, 1))
    gens_in, gens_out = pair_generators(group, rep_in), pair_generators(group, rep_out)
    if rotate_basis:  # hide the block structure: a random orthogonal change of basis
        q_in = _random_orthogonal(rep_in.dim, rng)
        q_out = _random_orthogonal(rep_out.dim, rng)
        gens_in = [q_in @ g @ q_in.T for g in gens_in]
        gens_out = [q_out @ g @ q_out.T for g in gens_out]
    dense = equivariant_projector(group, gens_in, gens_out, b, name, method="dense")
    schur = equivariant_projector(group, gens_in, gens_out, b, name, method="schur")
    np.testing.assert_allclose(schur.sigma, dense.sigma, atol=1e-9)
    for _ in range(3):
        w = torch.tensor(rng.standard_normal((rep_out.dim, rep_in.dim)))
        torch.testing.assert_close(schur.apply(w), dense.apply(w), atol=1e-6, rtol=0)


@pytest.mark.parametrize("group", ["SO2", "C6"])
def test_b0_pair_maps_are_equivariant(group):
    rep_in, rep_out = PairRep((1, 2, 1)), PairRep((2, 1))
    projector = equivariant_projector(group, rep_in, rep_out, 0.0)
    w = projector.apply(torch.randn(rep_out.dim, rep_in.dim, dtype=torch.float64)).numpy()
    assert np.abs(w).max() > 0.1  # frequencies match: the equivariant space is not trivial
    angles = [0.4, -2.2] if group == "SO2" else [2 * math.pi / 6 * j for j in range(6)]
    for angle in angles:
        np.testing.assert_allclose(
            w @ pair_action(group, rep_in, angle),
            pair_action(group, rep_out, angle) @ w,
            atol=1e-10,
        )


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_save_and_load_round_trip(tmp_path, suffix):
    projectors = [
        invariant_projector("C18", 7, 0.4, "rank"),
        equivariant_projector("SO2", PairRep((1, 2)), PairRep((1, 1)), 0.3),
        equivariant_projector("C4", PairRep((1, 2)), PairRep((1, 1)), 0.3, method="dense"),
    ]
    for projector in projectors:
        path = save_projector(projector, tmp_path / f"{projector.key.slug()}{suffix}")
        loaded = load_projector(path)
        assert loaded.key == projector.key
        assert (loaded.b_eff, loaded.kept) == (projector.b_eff, projector.kept)
        shape = (3, 7, 7) if hasattr(projector, "grid") else projector.shape
        w = torch.randn(*shape, dtype=torch.float64)
        torch.testing.assert_close(loaded.apply(w), projector.apply(w), atol=0, rtol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"tensors": {}, "meta": {"schema": "1"}, "payload": _Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_projector(path)
    with pytest.raises(ValueError, match=r"safetensors or \.pt"):
        load_projector(tmp_path / "x.pkl")


def test_cache_shares_one_object_per_key_and_disk_cache(tmp_path):
    clear_cache()
    a = invariant_projector("C4", 5, 0.5)
    assert invariant_projector("C4", 5, 0.5) is a
    assert invariant_projector("C4", 5, 0.5, side="data") is not a
    clear_cache()
    b = invariant_projector("C18", 5, 0.5, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [f"{b.key.slug()}.safetensors"]
    clear_cache()
    c = invariant_projector("C18", 5, 0.5, cache_dir=tmp_path)  # read back, not rebuilt
    assert c is not b
    np.testing.assert_array_equal(c.matrix, b.matrix)


@pytest.mark.parametrize("method", ["schur", "dense"])
@pytest.mark.parametrize(("group", "name", "b"), [("SO2", "decay", 0.5), ("C6", "shrink", 0.3)])
def test_apply_columns_projects_each_column_as_a_vector_map(method, group, name, b):
    """Biases and positional-encoding rows: one product equals P_b of each (d, 1) map."""
    out_gens = pair_generators(group, PairRep.vectors(6))
    trivial = [np.zeros((1, 1)) for _ in out_gens]
    projector = equivariant_projector(group, trivial, out_gens, b, name, method=method)
    columns = torch.randn(6, 5, dtype=torch.float64)
    each = torch.cat([projector.apply(columns[:, i : i + 1]) for i in range(5)], dim=1)
    torch.testing.assert_close(projector.apply_columns(columns), each, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="apply_columns"):
        projector.apply_columns(columns[:4])
