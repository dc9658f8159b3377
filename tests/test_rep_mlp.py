"""MLPs over declared representations (softeq.models.rep_mlp, softeq.soften_reps): gated
nonlinearities, uniform_rep, exact invariance / equivariance at b = 0, b = 1 the plain model,
error growing with b, residual pathways, fold, bounds, and clear errors."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import softeq
from softeq.bounds import check, report
from softeq.engine.loop import auxiliary_loss
from softeq.layers import iter_soft
from softeq.matrix_groups import matrix_group
from softeq.models.rep_mlp import GatedNonlinearity, RepMLP, TensorSquare, gated, uniform_rep
from softeq.reps import parse_rep
from softeq.rpp import ResidualPathway
from softeq.soften_reps import soften_rep_model

O5 = matrix_group("O5")
SO3 = matrix_group("SO3")


def o5_model(seed: int = 0, width: int = 32, square: bool = True) -> RepMLP:
    torch.manual_seed(seed)
    return RepMLP(O5, "2V", "S", width, 2, square_input=square).double()


def perturb(model: nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Move every raw (pre-projection) tensor off its initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for soft in iter_soft(model):
            raw = soft.raw
            raw.add_(scale * torch.randn(raw.shape, generator=gen, dtype=raw.dtype))


def act(rep, g: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """rho(g) applied to every feature vector (the last axis) of x."""
    return x @ torch.as_tensor(rep.rho(g), dtype=x.dtype).T


def invariance_error(model: nn.Module, rep, x: torch.Tensor, rng) -> torch.Tensor:
    """|f(g x) - f(x)| per input, the largest over three random group elements."""
    with torch.no_grad():
        y = model(x)
        errs = [(model(act(rep, O5.sample(rng), x)) - y).abs().amax(-1) for _ in range(3)]
    return torch.stack(errs).amax(0)


@pytest.fixture(scope="module")
def softened_o5():
    """The O(5) model softened at b = 0, 0.25, 0.5, 1 (shrink) from the same raw weights."""
    models = {}
    for b in (0.0, 0.25, 0.5, 1.0):
        model = softeq.soften(o5_model(), group="O5", softness=b)
        perturb(model)
        models[b] = model
    return models


def test_uniform_rep_has_the_exact_gated_width():
    for group in (O5, SO3, matrix_group("Lorentz")):
        for width in (32, 64, 100, 257):
            rep = uniform_rep(group, width)
            assert gated(rep).dim == width, (group.name, width, rep.key)
            assert {k.key for k, _ in rep.blocks()} >= {"V", "V**2"}
    assert uniform_rep(O5, 7, max_order=0).key == "7S"
    assert gated(uniform_rep(O5, 12, max_order=1)).dim == 12
    with pytest.raises(ValueError, match=r"too small.*at least 32"):
        uniform_rep(O5, 31)


@pytest.mark.parametrize(("group", "text"), [(SO3, "2S+V+V**2+S"), (O5, "V+2S+V*V.T")])
def test_gated_nonlinearity_is_equivariant(group, text):
    rep = parse_rep(text, group)
    gate = GatedNonlinearity(rep, "silu").double()
    assert gated(rep).dim == rep.dim + sum(m for k, m in rep.blocks() if not k.is_scalar)
    rng = np.random.default_rng(0)
    x = torch.randn(20, gated(rep).dim, dtype=torch.float64)
    for _ in range(3):
        g = group.sample(rng)
        torch.testing.assert_close(gate(act(gated(rep), g, x)), act(rep, g, gate(x)))


def test_gated_nonlinearity_layout():
    rep = parse_rep("S+V", SO3)
    x = torch.tensor([[-2.0, 1.0, 2.0, 3.0, 0.0]])  # scalar, vector, the vector's gate
    y = GatedNonlinearity(rep)(x)
    torch.testing.assert_close(y, torch.tensor([[0.0, 0.5, 1.0, 1.5]]))
    with pytest.raises(ValueError, match="expects 5 features"):
        GatedNonlinearity(rep)(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="unknown activation"):
        GatedNonlinearity(rep, "softsign")


def test_tensor_square_is_equivariant_and_kron_laid_out():
    rep = parse_rep("2V", O5)
    square = TensorSquare(rep)
    x = torch.randn(4, rep.dim, dtype=torch.float64)
    g = O5.sample(np.random.default_rng(3))
    torch.testing.assert_close(square(act(rep, g, x)), act(square.out_rep, g, square(x)))
    assert square.out_rep.key == "2V+3V**2"
    x1, x2 = x[0, :5].numpy(), x[0, 5:].numpy()
    expected = np.concatenate([x1, x2, np.kron(x1, x1), np.kron(x1, x2), np.kron(x2, x2)])
    np.testing.assert_allclose(square(x)[0].numpy(), expected)
    mixed = TensorSquare(parse_rep("S+V", SO3))  # a scalar factor drops out: S, V, V**2
    assert mixed.out_rep.key == "S+V+S+V+V**2"
    y = torch.randn(2, 4, dtype=torch.float64)
    g = SO3.sample(np.random.default_rng(4))
    torch.testing.assert_close(mixed(act(mixed.rep, g, y)), act(mixed.out_rep, g, mixed(y)))


def test_model_layout_and_reps():
    model = o5_model()
    assert [(a.key, b.key) for a, b in model.reps][1:] == [
        (model.hidden.key, gated(model.hidden).key),
        (model.hidden.key, "S"),
    ]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(85, 32), (30, 32), (30, 1)]
    assert model(torch.randn(3, 10, dtype=torch.float64)).shape == (3, 1)
    with pytest.raises(ValueError, match="expects 10 input features"):
        model(torch.randn(3, 9, dtype=torch.float64))


def test_b0_is_o5_invariant_and_not_constant(softened_o5):
    model = softened_o5[0.0]
    x = torch.randn(64, 10, dtype=torch.float64)
    assert float(invariance_error(model, model.in_rep, x, np.random.default_rng(0)).max()) < 1e-5
    with torch.no_grad():
        assert float(model(x).std()) > 1e-6  # the tensor square gives it invariants to use


def test_b1_is_the_plain_model(softened_o5):
    plain = o5_model()
    with torch.no_grad():
        for soft in iter_soft(softened_o5[1.0]):  # undo the perturbation on the plain copy
            dict(plain.named_parameters())[soft.name].copy_(soft.raw)
    x = torch.randn(16, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(softened_o5[1.0](x), plain(x), atol=1e-10, rtol=0)


def test_invariance_error_grows_with_b(softened_o5):
    x = torch.randn(128, 10, dtype=torch.float64)
    errors = [
        float(invariance_error(m, m.in_rep, x, np.random.default_rng(7)).mean())
        for _, m in sorted(softened_o5.items())
    ]
    assert errors[0] < 1e-6 and errors[1] > 1e-4, errors
    assert all(a < b for a, b in itertools.pairwise(errors)), errors


def test_so3_vector_model_is_equivariant_at_b0():
    torch.manual_seed(0)
    model = RepMLP("SO3", "V", "V", 32, 2, square_input=True).double()
    softeq.soften(model, group="SO3", softness=0.0)
    perturb(model)
    x = torch.randn(32, 3, dtype=torch.float64)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        for _ in range(3):
            r = SO3.sample(rng)
            torch.testing.assert_close(
                model(act(model.in_rep, r, x)), act(model.out_rep, r, model(x))
            )
        assert float(model(x).std()) > 1e-6


def test_projectors_are_shared_within_one_call():
    torch.manual_seed(0)
    model = soften_rep_model(RepMLP(SO3, "V", "V", 16, 3).double(), 0.5)
    projectors = {s.name: s.parametrization.projector for s in iter_soft(model)}
    assert projectors["net.2.weight"] is projectors["net.4.weight"]
    assert projectors["net.2.bias"] is projectors["net.0.bias"]


def test_rpp_b0_stays_invariant_after_training_and_b_gt0_starts_as_the_plain_model():
    model = softeq.soften(o5_model(), group="O5", softness=0.0, filter="rpp", rpp_prior=0.1)
    pathways = [s.parametrization for s in iter_soft(model)]
    assert len(pathways) == 6 and all(isinstance(p, ResidualPathway) for p in pathways)
    assert not any("free" in name for name, _ in model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 10, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    for _ in range(2):
        loss = (model(x) - y).pow(2).mean() + auxiliary_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(invariance_error(model, model.in_rep, x, np.random.default_rng(2)).max()) < 1e-5
    check(report(model))
    softer = softeq.soften(o5_model(), group="O5", softness=0.5, filter="rpp")
    with torch.no_grad():
        torch.testing.assert_close(softer(x), o5_model()(x), atol=1e-10, rtol=0)
        assert sum(p.free.numel() for p in (s.parametrization for s in iter_soft(softer))) > 0


@pytest.mark.parametrize("filter", ["shrink", "rpp"])
def test_fold_gives_the_same_outputs_and_bounds_hold(softened_o5, filter):
    if filter == "shrink":
        model = softened_o5[0.5]
    else:
        model = softeq.soften(o5_model(), group="O5", softness=0.5, filter="rpp")
        perturb(model)
    records = report(model)
    assert [r.name for r in records] == [s.name for s in iter_soft(model)] and len(records) == 6
    assert all(r.measured <= r.bound for r in records) and any(r.measured > 0 for r in records)
    check(records)
    folded = softeq.fold(model)
    assert not list(iter_soft(folded))
    x = torch.randn(8, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-12, rtol=0)


def test_bounds_hold_for_every_spectral_filter_and_b(softened_o5):
    for b, model in softened_o5.items():
        records = report(model)
        check(records)
        assert all(r.b == b and r.group == "O5" for r in records)


def test_plain_sequential_mlp_with_declared_reps_is_invariant_at_b0():
    torch.manual_seed(0)
    mlp = nn.Sequential(
        nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    )
    mlp = softeq.soften(
        mlp.double(), group="O5", softness=0.0, in_rep="2V", out_rep="S", hidden_rep="16S"
    )
    assert len(list(iter_soft(mlp))) == 6
    x = torch.randn(8, 10, dtype=torch.float64)
    assert (
        float(invariance_error(mlp, parse_rep("2V", O5), x, np.random.default_rng(0)).max()) < 1e-5
    )
    with pytest.raises(ValueError, match="pass hidden_rep"):
        softeq.soften(
            nn.Sequential(nn.Linear(10, 4), nn.Linear(4, 1)), group="O5", in_rep="2V", out_rep="S"
        )
    with pytest.raises(ValueError, match=r"Linear\(10, 4\) does not map 2V"):
        softeq.soften(
            nn.Sequential(nn.Linear(10, 4), nn.Linear(4, 1)),
            group="O5",
            in_rep="2V",
            out_rep="S",
            hidden_rep="5S",
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group": "SO3"}, "model over O5, but soften got group='SO3'"),
        ({"group": "C4"}, "pass group='O5'"),
        ({"group": "O5", "softness_pos": 0.3}, "softness_pos"),
        ({"group": "O5", "include": "net.0"}, "include"),
        ({"group": "O5", "in_place": "*"}, "in_place"),
        ({"group": "O5", "operator": "exact"}, "operator"),
        ({"group": "O5", "features": "pairs"}, "features"),
        ({"group": "O5", "in_rep": "2V"}, "declares its representations"),
        ({"group": "O5", "rpp_prior": 0.1}, "rpp_prior applies to filter 'rpp'"),
        ({"group": "O5", "filter": "rpp", "hard_mask": True}, "hard_mask"),
        ({"group": "O5", "filter": "blur"}, "blur"),
    ],
)
def test_bad_arguments_raise_clearly(kwargs, message):
    model = RepMLP(O5, "2V", "S", "3S+V", 1)
    with pytest.raises(ValueError, match=message):
        softeq.soften(model, softness=0.5, **kwargs)
    assert not list(iter_soft(model))


def test_bad_models_raise_clearly():
    with pytest.raises(ValueError, match="already softened"):
        softeq.soften(softeq.soften(RepMLP(O5, "V", "S", "2S", 1), group="O5"), group="O5")
    with pytest.raises(ValueError, match="depth must be >= 0"):
        RepMLP(O5, "V", "S", 32, -1)
    with pytest.raises(ValueError, match="of group SO3, not O5"):
        RepMLP(O5, parse_rep("V", SO3), "S", 32, 1)
    model = RepMLP(O5, "V", "S", "2S", 1)
    model.reps = model.reps[:1]
    with pytest.raises(ValueError, match="2 Linear layers but declares 1"):
        softeq.soften(model, group="O5")


@pytest.mark.parametrize(
    ("filter", "b", "hard_mask"),
    [("rank", 0.05, True), ("rank", 0.07, True), ("threshold", 0.5, False), ("decay", 0.5, False)],
)
def test_other_filters_keep_their_bounds(filter, b, hard_mask):
    torch.manual_seed(0)
    model = RepMLP(O5, "2V", "S", "4S+V", 1, square_input=True)  # float32, as trained
    softeq.soften(model, group="O5", softness=b, filter=filter, hard_mask=hard_mask)
    perturb(model)
    records = report(model)
    check(records)
    expected = "rank-hard" if hard_mask else filter
    assert {r.filter for r in records} == {expected} and {r.b for r in records} == {b}
    x = torch.randn(16, 10)
    assert invariance_error(model, model.in_rep, x, np.random.default_rng(5)).isfinite().all()


def test_float32_model_is_invariant_at_b0():
    torch.manual_seed(0)
    model = softeq.soften(
        RepMLP(O5, "2V", "S", "4S+V", 1, square_input=True), group="O5", softness=0
    )
    perturb(model)
    x = torch.randn(64, 10)
    assert float(invariance_error(model, model.in_rep, x, np.random.default_rng(6)).max()) < 1e-5
