"""Trajectory models, metrics and engine: exact SO(2) equivariance at b = 0 (before and after
training), identity at b = 1, constant velocity, hand-computed metrics, resume."""

import copy
import math

import pytest
import torch
from torch import nn

import softeq
from softeq.data.eth_ucy import TrajectoryDataset
from softeq.data.synthetic_trajectories import build_synthetic
from softeq.engine.evaluation import EvalSettings
from softeq.engine.trajectory import TrajectoryRecipe, evaluate_trajectory, train_trajectory
from softeq.layers import iter_soft
from softeq.metrics.trajectory import (
    TrajectoryMeter,
    ade,
    ade_sum,
    equivariance_error,
    fde,
)
from softeq.models.trajectory import (
    PRESETS,
    ConstantVelocity,
    PairDropout,
    PairLayerNorm,
    TrajectoryTransformer,
    build_trajectory_model,
)
from softeq.transforms import rotate_trajectories


def _small(dropout: float = 0.0, **kw) -> TrajectoryTransformer:
    torch.manual_seed(0)
    return TrajectoryTransformer(4, 3, d_model=8, layers=2, heads=2, ffn=12, dropout=dropout, **kw)


def _assert_equivariant(model: nn.Module, obs_len: int, pred_len: int, atol: float = 1e-5):
    generator = torch.Generator().manual_seed(1)
    obs = 3 * torch.randn(6, obs_len, 2, generator=generator, dtype=torch.float64) + 5
    fut = 3 * torch.randn(6, pred_len, 2, generator=generator, dtype=torch.float64) + 5
    angles = 360 * torch.rand(6, generator=generator, dtype=torch.float64) - 180
    model.eval()
    with torch.no_grad():
        for args in ((obs,), (obs, fut)):  # rollout and teacher forcing
            rotated = model(*(rotate_trajectories(a, angles) for a in args))
            expected = rotate_trajectories(model(*args), angles)
            torch.testing.assert_close(rotated, expected, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = build_synthetic(tmp_path_factory.mktemp("synthetic"), seed=0)
    return TrajectoryDataset.from_split(root, "corridor000", "val", obs_len=4, pred_len=3)


def test_soften_softens_every_linear_and_b0_is_so2_equivariant():
    model = softeq.soften(_small().double(), "SO2", 0.0, features="pairs")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 7 + 2 * 6 + 1  # 4 + 3 time steps, 6 per block, the head
    assert sum(1 for _ in iter_soft(model)) == 2 * len(linears)  # every weight and bias
    _assert_equivariant(model, 4, 3)
    # the plain model is not equivariant (the check has teeth)
    with pytest.raises(AssertionError):
        _assert_equivariant(_small().double(), 4, 3)


def test_b0_stays_equivariant_after_training(synthetic):
    model = softeq.soften(_small(dropout=0.1).double(), "SO2", 0.0, features="pairs")
    before = copy.deepcopy(model.state_dict())
    recipe = TrajectoryRecipe(epochs=2, batch_size=16, lr=1e-2, rotate_degrees=30)
    history = train_trajectory(model, synthetic, recipe, seed=0)
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    _assert_equivariant(model, 4, 3)


def test_b1_equals_plain_model():
    plain = _small().double().eval()
    soft = softeq.soften(copy.deepcopy(plain), "SO2", 1.0, features="pairs").eval()
    obs = torch.randn(5, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(soft(obs), plain(obs), atol=1e-12, rtol=0)


def test_teacher_forcing_first_step_matches_rollout():
    model = _small().double().eval()
    obs, fut = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(obs, fut)[:, 0], model(obs)[:, 0])
        rolled = model(obs)
        torch.testing.assert_close(model(obs, rolled), rolled)  # fed its own rollout back
    with pytest.raises(ValueError, match="observed steps"):
        model(torch.randn(3, 5, 2, dtype=torch.float64))


def test_pair_layers_commute_with_rotations():
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    norm = PairLayerNorm(8).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    drop = PairDropout(0.5).train()

    def rot(v, angle):
        return rotate_trajectories(v.unflatten(-1, (-1, 2)), angle).flatten(-2)

    torch.testing.assert_close(norm(rot(x, 37.0)), rot(norm(x), 37.0))
    torch.manual_seed(0)
    dropped = drop(rot(x, 37.0))
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, rot(drop(x), 37.0))
    pairs = dropped.unflatten(-1, (-1, 2))
    assert ((pairs == 0).all(-1) | (pairs != 0).all(-1)).all()  # whole pairs dropped


def test_presets():
    filtered = build_trajectory_model("filtered")
    assert filtered.config == PRESETS["filtered"]
    assert (filtered.obs_len, filtered.pred_len, filtered.config.d_model) == (10, 10, 128)
    assert len(filtered.blocks) == 4 and filtered.blocks[0].attn.heads == 4
    assert PRESETS["nonequivariant"].d_model == 256 and PRESETS["nonequivariant"].layers == 8
    assert isinstance(build_trajectory_model("constant_velocity", obs_len=8), ConstantVelocity)
    with pytest.raises(ValueError, match="unknown"):
        build_trajectory_model("tiny", width=3)
    with pytest.raises(ValueError, match="whole"):
        TrajectoryTransformer(d_model=12, heads=4)  # 3 channels per head: not whole pairs


def test_constant_velocity_hand_computed():
    cv = ConstantVelocity(3, 2)
    line = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]])
    truth = torch.tensor([[[3.0, 6.0], [4.0, 8.0]]])
    assert ade(cv(line), truth) == 0.0 and fde(cv(line), truth) == 0.0
    # turning: velocity (0, 1) from (1, 0) -> (1, 1); predicted (1, 2), (1, 3)
    turn = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]])
    truth = torch.tensor([[[0.0, 1.0], [-1.0, 1.0]]])
    torch.testing.assert_close(cv(turn), torch.tensor([[[1.0, 2.0], [1.0, 3.0]]]))
    assert ade(cv(turn), truth) == pytest.approx((math.sqrt(2) + math.sqrt(8)) / 2)
    assert fde(cv(turn), truth) == pytest.approx(math.sqrt(8))
    assert ade_sum(cv(turn), truth) == pytest.approx(math.sqrt(2) + math.sqrt(8))


def test_metrics_hand_computed_with_mask():
    # two windows x two agent slots; the second slot of window 1 is padding
    pred = torch.zeros(2, 2, 2, 2)
    truth = torch.zeros(2, 2, 2, 2)
    truth[0, 0] = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # errors 5, 0
    truth[0, 1] = torch.tensor([[0.0, 1.0], [0.0, 2.0]])  # errors 1, 2
    truth[1, 0] = torch.tensor([[1.0, 0.0], [6.0, 8.0]])  # errors 1, 10
    truth[1, 1] = 100.0  # padding: must not count
    mask = torch.tensor([[True, True], [True, False]])
    assert ade(pred, truth, mask) == pytest.approx((2.5 + 1.5 + 5.5) / 3)
    assert fde(pred, truth, mask) == pytest.approx((0 + 2 + 10) / 3)
    assert ade_sum(pred, truth, mask) == pytest.approx((5 + 3 + 11) / 3)
    # rotation: +90 degrees maps (1, 0) to (0, 1), per sample
    turned = rotate_trajectories(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([90.0, 0]))
    torch.testing.assert_close(turned, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    # equivariance error: f(x) = (1, 0) everywhere, f(Rx) = (1, 0): R f(x) = (0, 1) -> sqrt(2)
    const = torch.tensor([1.0, 0.0]).expand(1, 1, 3, 2)
    assert equivariance_error(const, const, 90.0) == pytest.approx(math.sqrt(2))
    assert equivariance_error(const, const, 0.0) == 0.0
    meter = TrajectoryMeter()
    for i in range(2):  # batch by batch equals all at once
        meter.update(
            pred[i : i + 1],
            truth[i : i + 1],
            mask[i : i + 1],
            rot_pred=pred[i : i + 1],
            rot_target=truth[i : i + 1] * 0,
            angles_deg=[10.0],
        )
    out = meter.compute()
    assert out["count"] == 3 and out["ade"] == pytest.approx((2.5 + 1.5 + 5.5) / 3)
    assert out["rot_ade"] == 0.0 and out["combined_ade"] == pytest.approx(out["ade"] / 2)
    assert out["combined_fde"] == pytest.approx(4.0 / 2) and out["eq_error"] == 0.0


def test_evaluate_constant_velocity_is_exactly_equivariant(synthetic):
    spec = EvalSettings(eval_rot=30.0, sweep=(0.0, 90.0))
    result = evaluate_trajectory(ConstantVelocity(4, 3), synthetic, spec, seed=0)
    metrics = result["metrics"]
    keys = ("ade", "fde", "ade_sum", "rot_ade", "rot_fde", "combined_ade", "combined_fde")
    assert set(keys) | {"eq_error"} <= set(metrics) and metrics["count"] == synthetic.num_agents
    assert metrics["eq_error"] < 1e-5 and metrics["ade"] > 0
    assert metrics["rot_ade"] == pytest.approx(metrics["ade"], abs=1e-5)
    assert metrics["ade_sum"] == pytest.approx(3 * metrics["ade"])
    assert [s["angle"] for s in result["angle_sweep"]] == [0.0, 90.0]
    assert result["angle_sweep"][1]["ade"] == pytest.approx(metrics["ade"], abs=1e-5)


def test_resume_gives_identical_weights(synthetic, tmp_path):
    recipe = TrajectoryRecipe(epochs=2, batch_size=16, lr=5e-3, rotate_degrees=30)
    straight = _small(dropout=0.1)
    train_trajectory(straight, synthetic, recipe, seed=3)
    resumed = _small(dropout=0.1)
    ckpt = tmp_path / "ckpt.pt"
    first = train_trajectory(
        resumed, synthetic, recipe, seed=3, checkpoint=ckpt, stop_after_epochs=1
    )
    assert len(first) == 1 and ckpt.exists()
    fresh = _small(dropout=0.1)  # a new process: the model starts from scratch, the file resumes
    history = train_trajectory(fresh, synthetic, recipe, seed=3, checkpoint=ckpt)
    assert len(history) == 2
    for key, value in straight.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    with pytest.raises(ValueError, match="another recipe or seed"):
        train_trajectory(_small(), synthetic, recipe, seed=4, checkpoint=ckpt)
