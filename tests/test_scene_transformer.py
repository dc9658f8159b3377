"""The reference trajectory architecture (softeq.models.scene_transformer): equivariance at b = 0
with the exact and the in-place filter, what the in-place filter does per call, teacher forcing
with and without the target leak, and training / evaluation through the engine."""

from __future__ import annotations

import math

import pytest
import torch

import softeq
from softeq.engine.evaluation import EvalSettings
from softeq.engine.trajectory import (
    TrajectoryHooks,
    TrajectoryRecipe,
    evaluate_trajectory,
    predict,
    train_trajectory,
)
from softeq.layers import iter_soft
from softeq.models.registry import create_model
from softeq.transforms import rotate_trajectories

AGENTS = 3


def scene_model(name: str = "reference-filtered", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    small = {"d_model": 16, "layers": 2, "heads": 2, "ffn": 32} if "filtered" in name else {}
    return create_model(name, task="trajectory", max_agents=AGENTS, **{**small, **kwargs})


def windows(n: int = 5, obs_len: int = 10, pred_len: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(n, AGENTS, obs_len + pred_len, 2, generator=g).cumsum(2) * 0.3
    positions = steps + 4 * torch.randn(n, AGENTS, 1, 2, generator=g)
    mask = torch.ones(n, AGENTS, dtype=torch.bool)
    mask[0, -1] = False  # a window with an absent (zero-padded) agent
    positions[0, -1] = 0
    return positions[:, :, :obs_len], positions[:, :, obs_len:], mask


def equivariance_error(model: torch.nn.Module) -> float:
    """max |R f(x) - f(R x)| / max |f(x)| over random angles, in float64."""
    model = model.double().eval()
    obs, _, mask = windows()
    obs = obs.double()
    angles = torch.rand(len(obs), generator=torch.Generator().manual_seed(3)) * 360 - 180
    with torch.no_grad():
        pred = predict(model, obs, mask)
        turned = predict(model, rotate_trajectories(obs, angles), mask)
    return float((rotate_trajectories(pred, angles) - turned).abs().max() / pred.abs().max())


def in_place_options(model: torch.nn.Module) -> dict:
    return {"vector_filter": "decay", "in_place": list(model.reference_in_place)}


def test_the_strict_model_is_so2_equivariant_with_the_exact_filter():
    model = softeq.soften(scene_model(), "SO2", 0.0, filter="rank")
    assert equivariance_error(model) < 1e-5


def test_the_strict_model_is_so2_equivariant_with_the_in_place_filter():
    model = scene_model()
    softeq.soften(model, "SO2", 0.0, filter="shrink", **in_place_options(model))
    assert equivariance_error(model) < 1e-5


def test_the_plain_model_is_not_equivariant():
    assert equivariance_error(softeq.soften(scene_model(), "SO2", 1.0, filter="rank")) > 1e-2


def test_the_in_place_filter_compounds_with_every_forward_call():
    b = 0.5
    model = scene_model()
    softeq.soften(model, "SO2", b, filter="shrink", **in_place_options(model))
    q = model.blocks[0].attn.q.weight
    exact = softeq.soften(scene_model(), "SO2", 0.0, filter="shrink")
    projector = next(s for s in iter_soft(exact) if s.name == "blocks.0.attn.q.weight")
    projector = projector.parametrization.projector

    def off_part() -> float:  # norm of the non-equivariant part of q's weight
        with torch.no_grad():
            return float((q - projector.apply(q)).norm())

    pos_before, off_before = float(model.pos.detach().norm()), off_part()
    obs, _, mask = windows(n=2)
    with torch.no_grad():
        predict(model.eval(), obs, mask)  # one model call: pred_len decoder passes
    calls = model.pred_len
    assert off_part() == pytest.approx(off_before * b**calls, rel=1e-3)
    decayed = pos_before * math.exp(-1 / b)  # the positional encoding: once per model call
    assert float(model.pos.detach().norm()) == pytest.approx(decayed, rel=1e-4)
    assert not any(True for s in iter_soft(model) if s.name.endswith("attn.q.weight"))


def test_the_leaky_teacher_forcing_lets_output_k_see_future_step_k():
    obs, fut, _ = windows(n=2)
    for forcing, sees_itself in (("leak", True), ("shifted", False)):
        model = scene_model(teacher_forcing=forcing, dropout=0.0).eval()
        changed = fut.clone()
        changed[:, :, 4] += 1.0
        with torch.no_grad():
            delta = (model(obs, changed) - model(obs, fut)).abs().amax(dim=(0, 1, 3))
        assert (delta[4] > 1e-6) == sees_itself  # output 4 vs. future step 4
        assert float(delta[:4].max()) == 0.0  # never an earlier output


def test_the_per_epoch_schedule_is_cosine_annealing_stepped_per_epoch():
    recipe = TrajectoryRecipe(epochs=5, lr=5e-4, min_lr=1e-6, schedule="epoch")
    factor = TrajectoryHooks(scene_model(), recipe).lr_factor(steps_per_epoch=3)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5, eta_min=1e-6)
    for epoch in range(5):
        for step in range(3):
            assert 5e-4 * factor(epoch * 3 + step) == pytest.approx(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()


def test_a_per_epoch_schedule_with_warmup_is_refused():
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrajectoryRecipe(schedule="epoch", warmup_epochs=1.0)


class Windows(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        obs, fut, mask = windows(n=n, obs_len=8, pred_len=12)
        self.items = [(o[m], f[m]) for o, f, m in zip(obs, fut, mask, strict=True)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def test_the_scene_model_trains_selects_its_best_epoch_and_evaluates(tmp_path):
    model = scene_model("reference-nonequivariant", d_model=16, layers=1, heads=2, ffn=16)
    recipe = TrajectoryRecipe(
        epochs=3, batch_size=4, schedule="epoch", loss_per="coordinate", select_epoch=True
    )
    best = tmp_path / "best.pt"
    history = train_trajectory(
        model, Windows(8), recipe, seed=0, val_set=Windows(4), best_checkpoint=best
    )
    assert len(history) == 3 and all("val_ade" in record for record in history)
    assert best.exists()
    result = evaluate_trajectory(model, Windows(4), EvalSettings(eval_rot=45, sweep=(0, 90)), 0)
    metrics = result["metrics"]
    assert metrics["count"] == 4 * AGENTS - 1  # the padded agent is not counted
    assert metrics["ade_sum"] == pytest.approx(12 * metrics["ade"])
    assert metrics["combined_ade"] == pytest.approx((metrics["ade"] + metrics["rot_ade"]) / 2)
    # one batch of 4 windows: the per-batch convention equals the agent mean
    assert metrics["eq_error_batches"] == pytest.approx(metrics["eq_error"])
