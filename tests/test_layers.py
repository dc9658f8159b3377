"""Soft layers and soften(): exact equivariance at b = 0, autograd, no hidden state, fold."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import softeq
from softeq.groups import PairRep, pair_action
from softeq.layers import PairGate, iter_soft


def _small_cnn():
    # 33 -> 17 -> 9 -> 5: odd feature sizes at every stride keep rot90 on the pixel lattice
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.GELU(),
        nn.Conv2d(8, 6, 3, stride=2, padding=1, dilation=1),
        nn.Conv2d(6, 4, 1),
    ).eval()


@pytest.mark.parametrize("name", ["shrink", "threshold", "rank"])
def test_small_cnn_at_b0_is_exactly_c4_equivariant(name):
    torch.manual_seed(0)
    model = softeq.soften(_small_cnn(), "C4", 0.0, filter=name)
    assert sum(1 for _ in iter_soft(model)) == 3  # the 1x1 conv is not softened
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        y = model(x)
        for quarter in (1, 2, 3):
            rotated = model(torch.rot90(x, quarter, (2, 3)))
            torch.testing.assert_close(rotated, torch.rot90(y, quarter, (2, 3)), atol=1e-5, rtol=0)
    plain = _small_cnn()
    with torch.no_grad():
        error = (plain(torch.rot90(x, 1, (2, 3))) - torch.rot90(plain(x), 1, (2, 3))).abs().max()
    assert error > 1e-2  # the plain network is not equivariant: the test can fail


class PairMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(4, 16), PairGate(16), nn.Linear(16, 16), PairGate(16), nn.Linear(16, 6)
        )

    def forward(self, x):
        return self.layers(x)


def test_pair_mlp_at_b0_is_so2_equivariant_for_continuous_angles():
    torch.manual_seed(1)
    model = softeq.soften(PairMLP().double(), "SO2", 0.0)
    x = torch.randn(5, 4, dtype=torch.float64)
    y = model(x)
    assert y.abs().max() > 1e-3
    rng = np.random.default_rng(0)
    for angle in rng.uniform(-math.pi, math.pi, 5):
        g_in = torch.tensor(pair_action("SO2", PairRep.vectors(4), angle))
        g_out = torch.tensor(pair_action("SO2", PairRep.vectors(6), angle))
        torch.testing.assert_close(model(x @ g_in.T), y @ g_out.T, atol=1e-5, rtol=0)


def test_soft_layers_train_the_raw_weight_and_hold_no_state():
    torch.manual_seed(2)
    model = softeq.soften(_small_cnn().train(), "C4", 0.3)
    x = torch.randn(2, 3, 33, 33)
    model.eval()
    first, second = model(x), model(x)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    first.square().mean().backward()
    for soft in iter_soft(model):
        assert soft.raw.grad is not None and soft.raw.grad.abs().sum() > 0
    raw_before = [s.raw.detach().clone() for s in iter_soft(model)]
    model(x)
    for before, soft in zip(raw_before, iter_soft(model), strict=True):
        torch.testing.assert_close(soft.raw, before, atol=0, rtol=0)  # nothing written in place


@pytest.mark.parametrize("b", [0.0, 0.5, 1.0])
def test_fold_gives_a_plain_model_with_the_same_outputs(b):
    torch.manual_seed(3)
    model = softeq.soften(_small_cnn(), "C4", b)
    folded = softeq.fold(model)
    assert not list(iter_soft(folded))
    assert not any(hasattr(m, "parametrizations") for m in folded.modules())
    assert list(iter_soft(model))  # the soft model is left as it was
    x = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-6, rtol=0)
    assert set(dict(folded.named_parameters())) == set(dict(_small_cnn().named_parameters()))


def test_b1_soft_model_equals_the_plain_model():
    torch.manual_seed(4)
    plain = _small_cnn()
    soft = softeq.soften(copy.deepcopy(plain), "C4", 1.0)
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        torch.testing.assert_close(soft(x), plain(x), atol=1e-6, rtol=0)


def test_soften_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="unknown group"):
        softeq.soften(_small_cnn(), "C0", 0.5)
    with pytest.raises(ValueError, match="softness"):
        softeq.soften(_small_cnn(), "C4", 1.2)
    with pytest.raises(ValueError, match="not square"):
        softeq.soften(nn.Sequential(nn.Conv2d(1, 1, (3, 5))), "C4", 0.5)
    with pytest.raises(ValueError, match="ConvTranspose2d"):
        softeq.soften(nn.Sequential(nn.ConvTranspose2d(1, 1, 3)), "C4", 0.5)
    with pytest.raises(ValueError, match="no layer"):
        softeq.soften(_small_cnn(), "C4", 0.5, include="head*")
    with pytest.raises(ValueError, match="no positional token grid"):
        softeq.soften(_small_cnn(), "C4", 0.5, pos_embed=True)
    with pytest.raises(ValueError, match="softness_pos"):
        softeq.soften(_small_cnn(), "C4", 0.5, softness_pos=0.3)
    with pytest.raises(ValueError, match="even"):
        softeq.soften(nn.Sequential(nn.Linear(3, 4)), "SO2", 0.5)
    with pytest.raises(ValueError, match="pair features"):
        softeq.soften(_small_cnn(), "SO2", 0.5, features="image")
    model = softeq.soften(_small_cnn(), "C4", 0.5)
    with pytest.raises(ValueError, match="already softened"):
        softeq.soften(model, "C4", 0.5)


def test_soften_selects_by_name_and_kernel_size():
    model = softeq.soften(_small_cnn(), "C4", 0.5, exclude=["0"], min_kernel=3)
    assert [s.name for s in iter_soft(model)] == ["2.weight", "5.weight"]
    model = softeq.soften(_small_cnn(), "D4", 0.5, include=["0", "6"], min_kernel=1)
    assert [s.name for s in iter_soft(model)] == ["0.weight", "6.weight"]
