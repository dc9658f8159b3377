"""bounds.report on real timm backbones: one record per soft tensor, measured <= bound."""

import pytest
import timm
import torch

import softeq
from softeq.bounds import network_bound, report


def _vit():
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=10, reg_tokens=2
    ).eval()


@pytest.mark.parametrize("name", ["shrink", "threshold", "rank"])
def test_report_on_a_softened_vit(name):
    torch.manual_seed(0)
    model = softeq.soften(_vit(), "C4", 0.6, softness_pos=0.3, filter=name)
    records = {r.name: r for r in report(model)}
    assert set(records) == {"patch_embed.proj.weight", "pos_embed"}
    patch, pos = records["patch_embed.proj.weight"], records["pos_embed"]
    assert (patch.kind, patch.operator_size, patch.b) == ("kernel", 64, 0.6)
    assert (pos.kind, pos.operator_size, pos.b) == ("token_grid", 16, 0.3)
    for record in records.values():
        assert record.group == "C4" and record.filter == name
        assert 0 <= record.measured <= record.bound + 1e-9
        # C4 grids have sigma / sigma_max in {0, 0.71, 1}: threshold 0.6 keeps the null space only
        assert (record.measured > 1e-9) == (name != "threshold")
        assert record.bound == pytest.approx(record.b_eff * record.sigma_max)


def test_vit_prefix_tokens_are_untouched_and_b0_logits_invariant():
    torch.manual_seed(1)
    model = softeq.soften(_vit(), "C4", 0.0)
    pos = model.pos_embed
    raw = model.parametrizations.pos_embed.original
    torch.testing.assert_close(pos[:, :3], raw[:, :3], atol=0, rtol=0)  # class + 2 registers
    grid = pos[0, 3:].reshape(4, 4, -1)
    torch.testing.assert_close(torch.rot90(grid, 1, (0, 1)), grid, atol=1e-6, rtol=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(torch.rot90(x, 1, (2, 3))), model(x), atol=1e-5, rtol=0)
    assert all(r.measured < 1e-7 for r in report(model))


def test_report_covers_pair_biases_and_network_bound():
    model = softeq.soften(torch.nn.Sequential(torch.nn.Linear(4, 6)), "SO2", 0.5)
    kinds = sorted((r.name, r.kind, r.operator_size) for r in report(model))
    assert kinds == [("0.bias", "pair_map", 6), ("0.weight", "pair_map", 24)]
    assert network_bound(0.0, "SO2") == 0.0
    assert network_bound(0.5, "C4", eps=0.1) == pytest.approx(0.5 * 3.141592653589793**0.5 + 0.1)
