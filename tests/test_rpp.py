"""Residual pathway priors (softeq.rpp): exact at b = 0, the initial model, the prior, soften."""

import copy

import pytest
import torch
from torch import nn

import softeq
from softeq.bounds import check, report
from softeq.engine.loop import auxiliary_loss
from softeq.layers import iter_soft
from softeq.models.backbones import build_classifier
from softeq.rpp import DEFAULT_PRIOR, ResidualPathway
from softeq.soften_options import SoftenOptions
from softeq.spec import WILDCARD_PATTERNS, Softening


def small_cnn(seed: int = 0, in_chans: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    spec = {"timm": "simple_cnn", "input_size": 32, "kwargs": {"channels": [8, 12, 16]}}
    spec["kwargs"]["in_chans"] = in_chans
    return build_classifier(spec, 10)[1].eval()


def rpp_model(b: float, prior: float | None = None, seed: int = 0) -> nn.Module:
    return softeq.soften(small_cnn(seed), group="C4", softness=b, filter="rpp", rpp_prior=prior)


def test_simple_cnn_shape_and_layers():
    model = small_cnn()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 12, 16] and convs[0].kernel_size == (5, 5)


@pytest.mark.parametrize("filter", ["shrink", "rpp"])
def test_b0_is_c4_invariant(filter):
    torch.manual_seed(1)
    model = softeq.soften(small_cnn(), group="C4", softness=0.0, filter=filter)
    assert len(list(iter_soft(model))) == 3
    for size in (28, 32):
        x = torch.randn(4, 3, size, size)
        with torch.no_grad():
            logits = model(x)
            for k in (1, 2, 3):
                turned = model(torch.rot90(x, k, (2, 3)))
                assert torch.allclose(turned, logits, atol=1e-5), (size, k)


def test_b0_freezes_the_free_pathway_and_stays_exact_after_training():
    model = rpp_model(0.0).train()
    pathways = [s.parametrization for s in iter_soft(model)]
    assert all(isinstance(p, ResidualPathway) and not p.free.requires_grad for p in pathways)
    assert all(float(p.free.abs().max()) == 0 for p in pathways)
    assert not any("free" in name for name, _ in model.named_parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y) + auxiliary_loss(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(torch.rot90(x, 1, (2, 3))), model(x), atol=1e-5)
    check(report(model))


@pytest.mark.parametrize("b", [1.0, 0.5, 0.25])
def test_initial_model_equals_the_original(b):
    plain = small_cnn()
    model = rpp_model(b)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-5)
    folded = softeq.fold(model)
    assert not list(iter_soft(folded))
    with torch.no_grad():
        assert torch.allclose(folded(x), plain(x), atol=1e-5)


def test_b0_initial_model_is_the_projected_model():
    plain = small_cnn()
    projected = softeq.soften(small_cnn(), group="C4", softness=0.0)  # shrink at b = 0: P_0 W
    model = rpp_model(0.0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), projected(x), atol=1e-6)
        assert not torch.allclose(model(x), plain(x), atol=1e-3)


def test_prior_value():
    b, prior = 0.5, 1e-3
    plain = small_cnn()
    model = rpp_model(b, prior)
    expected = torch.zeros((), dtype=torch.float64)
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    for soft, conv in zip(iter_soft(model), convs, strict=True):
        w = conv.weight.detach().double()
        free = w - soft.parametrization.projector.apply(w)
        expected += prior * (w.pow(2).sum() + free.pow(2).sum() / b**2)
    value = auxiliary_loss(model)
    assert value.requires_grad
    assert float(value.detach()) == pytest.approx(float(expected), rel=1e-5)
    # b = 0: only the equivariant pathway's term; prior 0: no term at all
    zero = rpp_model(0.0, prior)
    w_eq = sum(float(s.raw.detach().double().pow(2).sum()) for s in iter_soft(zero))
    assert float(auxiliary_loss(zero).detach()) == pytest.approx(prior * w_eq, rel=1e-5)
    assert auxiliary_loss(rpp_model(0.5, 0.0)) is None
    assert DEFAULT_PRIOR > 0


def test_bound_report_of_pathways():
    records = report(rpp_model(0.5))
    assert {r.kind for r in records} == {"rpp"} and {r.filter for r in records} == {"rpp"}
    assert all(r.measured <= r.bound + 1e-6 and r.b == 0.5 for r in records)
    check(records)
    assert all(r.measured < 1e-6 and r.bound == 0 for r in report(rpp_model(0.0)))


def test_setting_and_options():
    setting = Softening("C4", 0.25, filter="rpp")
    assert setting.path == "group~C4/filter~rpp/b~0.25_pos~0.25"
    assert Softening.from_path(setting.path) == setting
    import re

    assert re.fullmatch(WILDCARD_PATTERNS["filter"], "rpp")
    with pytest.raises(ValueError, match="unknown filter 'rppp'"):
        Softening("C4", 0.25, filter="rppp")
    with pytest.raises(ValueError, match="no positional softness"):
        Softening("C4", 0.25, 0.5, filter="rpp")
    with pytest.raises(ValueError, match="conv kernels"):
        Softening("SO2", 0.25, filter="rpp")
    options = SoftenOptions.from_dict({"rpp_prior": 1e-3})
    assert options.soften_kwargs(setting) == {"rpp_prior": 1e-3}
    assert options.soften_kwargs(Softening("C4", 0.25)) == {}
    with pytest.raises(ValueError, match="rpp_prior"):
        SoftenOptions.from_dict({"rpp_prior": -1})


def test_soften_errors():
    with pytest.raises(ValueError, match="rpp_prior applies"):
        softeq.soften(small_cnn(), group="C4", softness=0.5, rpp_prior=1e-3)
    with pytest.raises(ValueError, match="unknown filter"):
        softeq.soften(small_cnn(), group="C4", softness=0.5, filter="nope")
    with pytest.raises(ValueError, match="no positional softness"):
        softeq.soften(small_cnn(), group="C4", softness=0.5, softness_pos=0.2, filter="rpp")
    pairs = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="conv kernels"):
        softeq.soften(pairs, group="SO2", softness=0.5, filter="rpp")
    vit = build_classifier(
        {
            "timm": "vit_tiny_patch16_224",
            "input_size": 32,
            "kwargs": {"img_size": 32, "patch_size": 4, "embed_dim": 12, "depth": 1},
        },
        10,
    )[1]
    with pytest.raises(ValueError, match="positional grid"):
        softeq.soften(copy.deepcopy(vit), group="C4", softness=0.5, filter="rpp")
    softeq.soften(vit, group="C4", softness=0.5, filter="rpp", pos_embed=False)
    assert [s.parametrization.kind for s in iter_soft(vit)] == ["rpp"]
