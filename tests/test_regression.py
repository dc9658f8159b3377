"""The O(5) regression: its data, training loop, metrics, table, figure and workflow wiring."""

import math
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from dry_runs import count_jobs
from softeq.data.o5 import (
    O5Protocol,
    dataset_name,
    invariant_target,
    make_split,
    noise_of,
    standardisation,
    symmetry_breaking,
    target,
)
from softeq.engine.regression import (
    RegressionRecipe,
    Standardised,
    evaluate_regression,
    input_actions,
    predict,
    regression_errors,
    train_regression,
)
from softeq.pipeline import ConfigError, resolve, validate_config
from softeq.results.aggregate import read_table, write_table
from softeq.results.regression import model_label, regression_table, write_regression_table
from softeq.spec import Softening

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


# ---- data ------------------------------------------------------------------------------------


def test_target_matches_a_hand_computation():
    x = np.zeros((2, 10))
    x[0, 0], x[0, 6] = 1.0, 2.0  # x1 = e0, x2 = 2 e1: orthogonal
    x[1, 2:4], x[1, 7:9] = (3.0, 4.0), (3.0, 4.0)  # x1 = x2, norm 5
    invariant = [math.sin(1) - 0.5 * 8, math.sin(5) - 0.5 * 125 + 1]
    np.testing.assert_allclose(invariant_target(x), invariant)
    # (|x1_0| + |x1_1| + |x2_0| + |x2_1|) / (|x1_2| + |x1_3| + |x2_2| + |x2_3| + 1)
    np.testing.assert_allclose(symmetry_breaking(x), [3.0 / 1.0, 0.0 / 15.0])
    np.testing.assert_allclose(target(x, 0.3), [invariant[0] + 0.9, invariant[1]])
    np.testing.assert_allclose(target(x, 0.0), invariant)


def test_invariant_part_is_o5_invariant():
    x, _ = make_split(O5Protocol(n_train=50), "train", 0.0)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((5, 5)))
    moved = np.concatenate([x[:, :5] @ q.T, x[:, 5:] @ q.T], axis=1)
    np.testing.assert_allclose(invariant_target(moved), invariant_target(x), atol=1e-10)
    assert not np.allclose(symmetry_breaking(moved), symmetry_breaking(x))


def test_splits_are_deterministic_and_independent():
    protocol = O5Protocol(n_train=30, n_val=20, n_test=10, seed=3)
    a, b = make_split(protocol, "train", 0.3), make_split(protocol, "train", 0.3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    val = make_split(protocol, "val", 0.3)[0]
    assert val.shape == (20, 10) and not np.allclose(val[:10], make_split(protocol, "test", 0.3)[0])
    bigger = O5Protocol(n_train=60, n_val=20, n_test=10, seed=3)
    np.testing.assert_array_equal(make_split(bigger, "val", 0.3)[0], val)  # sizes don't leak
    np.testing.assert_array_equal(make_split(protocol, "train", 0.5)[0], a[0])  # same inputs
    other = make_split(O5Protocol(n_train=30, seed=4), "train", 0.3)[0]
    assert not np.allclose(other, a[0])


def test_standardisation_comes_from_the_training_split_only():
    from softeq.stages.regression import load_splits

    protocol = {"n_train": 40, "n_val": 30, "n_test": 30, "seed": 0}
    splits = load_splits(protocol, "o5-s30")
    x, y = make_split(O5Protocol(**protocol), "train", 0.3)
    stats = standardisation(x, y)
    assert splits["stats"].y_mean == pytest.approx(stats.y_mean)
    assert stats.y_mean == pytest.approx(y.mean()) and stats.y_std == pytest.approx(y.std())
    rms = np.sqrt((x[:, :5] ** 2).mean()), np.sqrt((x[:, 5:] ** 2).mean())
    np.testing.assert_allclose(splits["stats"].x_scale, np.repeat(rms, 5))
    every = np.concatenate(
        [make_split(O5Protocol(**protocol), s, 0.3)[1] for s in ("train", "val")]
    )
    assert every.mean() != pytest.approx(splits["stats"].y_mean)


def test_dataset_names_carry_the_noise_level():
    assert [dataset_name(s) for s in (0.3, 0.05, 0.0, 1.0)] == [
        "o5-s30",
        "o5-s05",
        "o5-s00",
        "o5-s100",
    ]
    assert noise_of("o5-s30") == 0.3 and noise_of("o5-s05") == 0.05
    for bad in ("o5", "o5-30", "o5-s3", "digits"):
        with pytest.raises(ValueError, match="o5-s"):
            noise_of(bad)
    with pytest.raises(ValueError, match=r"multiple of 0\.01"):
        dataset_name(0.333)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)?", dataset_name(0.45))


# ---- training and metrics --------------------------------------------------------------------


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))


def tensors(split: str, n: int = 200):
    protocol = O5Protocol(n_train=n, n_val=n, n_test=n)
    x, y = make_split(protocol, split, 0.3)
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)


def standardised(model: nn.Module) -> nn.Module:
    x, y = tensors("train")
    stats = standardisation(x.numpy().astype(float), y.numpy().astype(float))
    return Standardised(model, stats.x_scale, stats.y_mean, stats.y_std)


def test_schedule_factors_follow_cosine_and_step():
    cosine = RegressionRecipe(epochs=10, lr=1e-3, min_lr=1e-4)
    assert cosine.epoch_factor(0) == pytest.approx(1.0)
    assert cosine.epoch_factor(10) == pytest.approx(0.1)
    assert cosine.epoch_factor(5) == pytest.approx(0.55)
    step = RegressionRecipe(epochs=10, schedule="step", step_size=3, gamma=0.5)
    assert [step.epoch_factor(e) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="select"):
        RegressionRecipe.from_dict({"select": "acc"})


def test_training_reduces_the_test_mse(tmp_path):
    model = standardised(tiny_mlp())
    test_x, test_y = tensors("test")
    before = regression_errors(predict(model, test_x), test_y)["mse"]
    recipe = RegressionRecipe(epochs=40, batch_size=50, lr=1e-2, min_lr=1e-3)
    history = train_regression(
        model, tensors("train"), tensors("val"), recipe, 0, tmp_path / "c.ckpt",
        best_checkpoint=tmp_path / "best",
    )  # fmt: skip
    after = regression_errors(predict(model, test_x), test_y)["mse"]
    assert after < 0.5 * before
    assert len(history) == 40 and {"val_mse", "val_rel_error"} <= set(history[0])
    assert (tmp_path / "best").exists() and (tmp_path / "c.ckpt").exists()


def test_resume_from_the_checkpoint_continues_bit_identically(tmp_path):
    recipe = RegressionRecipe(epochs=4, batch_size=50, lr=1e-2)
    args = (tensors("train"), tensors("val"), recipe, 7)
    whole = standardised(tiny_mlp())
    train_regression(whole, *args, tmp_path / "whole.ckpt")
    killed = standardised(tiny_mlp())
    first = train_regression(killed, *args, tmp_path / "part.ckpt", stop_after_epochs=2)
    assert len(first) == 2
    resumed = standardised(tiny_mlp(seed=1))  # other weights: the checkpoint must restore them
    history = train_regression(resumed, *args, tmp_path / "part.ckpt")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class NormModel(nn.Module):
    """An exactly O(5)-invariant function: |x1| + |x2| (scaled)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * (x[:, :5].norm(dim=1) + x[:, 5:].norm(dim=1))


def random_actions(n: int, seed: int = 0) -> torch.Tensor:
    """rho(g) of 2V for random orthogonal g (QR of Gaussian matrices)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 10, 10))
    for i in range(n):
        q, r = np.linalg.qr(rng.standard_normal((5, 5)))
        q = q * np.sign(np.diag(r))
        out[i, :5, :5] = out[i, 5:, 5:] = q
    return torch.as_tensor(out)


def test_invariance_error_vanishes_for_an_invariant_model_only():
    x, y = tensors("test", 100)
    actions = random_actions(len(x))
    invariant = evaluate_regression(NormModel(), x, y, actions)
    assert invariant["inv_error"] < 1e-5 and invariant["inv_error_rel"] < 1e-5
    assert invariant["rot_mse"] == pytest.approx(invariant["mse"], rel=1e-5)
    plain = evaluate_regression(tiny_mlp(), x, y, actions)
    assert plain["inv_error"] > 1e-3 and plain["inv_error_rel"] > 1e-3
    assert set(plain) == {
        "mse",
        "rel_error",
        "rot_mse",
        "rot_rel_error",
        "inv_error",
        "inv_error_rel",
    }


def test_relative_error_is_the_references():
    pred, y = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([3.0, -2.0, 0.0])
    errors = regression_errors(pred, y)
    assert errors["mse"] == pytest.approx(4 / 3)
    assert errors["rel_error"] == pytest.approx((2 / (4 + 1e-6) + 0 + 0) / 3)


def test_input_actions_are_orthogonal_block_diagonal():
    from softeq.engine.regression import input_actions

    actions = input_actions("O5", "2V", 4, seed=0)
    assert actions.shape == (4, 10, 10)
    for a in actions:
        torch.testing.assert_close(a @ a.T, torch.eye(10, dtype=a.dtype), atol=1e-8, rtol=0)
        torch.testing.assert_close(a[:5, :5], a[5:, 5:])
    again = input_actions("O5", "2V", 4, seed=0)
    torch.testing.assert_close(actions, again)


# ---- table and figure ------------------------------------------------------------------------


def summary_fixture(noise: float) -> pd.DataFrame:
    rows = [
        ("mlp", "shrink", 1.0, 0),
        ("emlp", "shrink", 0.0, 4),
        ("emlp", "rpp", 0.5, 4),
        ("soft", "rank-hard", 0.05, 4),
        ("soft", "shrink", 0.0, 4),
        ("soft", "shrink", 0.3, 4),
        ("soft", "shrink", 1.0, 4),
    ]
    records = []
    for i, (backbone, filter, b, layers) in enumerate(rows):
        record = {
            "task": "regression",
            "dataset": dataset_name(noise),
            "backbone": backbone,
            "group": "O5",
            "filter": filter,
            "softness": b,
            "softness_pos": b,
            "n_seeds": 2,
            "noise_mean": noise,
            "noise_std": 0.0,
            "soft_layers_mean": float(layers),
            "soft_layers_std": 0.0,
        }
        for j, metric in enumerate(("mse", "rel_error", "rot_mse", "rot_rel_error")):
            record[f"{metric}_mean"], record[f"{metric}_std"] = 0.1 * (i + 1) + j, 0.01
        for metric in ("inv_error", "inv_error_rel"):
            record[f"{metric}_mean"], record[f"{metric}_std"] = b * 0.2 + (layers == 0), 0.0
        records.append(record)
    return pd.DataFrame(records)


def test_table_and_figure_render_from_summaries(tmp_path):
    from softeq.figures.regression import plot_regression

    paths = []
    for noise in (0.3, 0.5):
        paths.append(write_table(summary_fixture(noise), tmp_path / f"s{noise}")[0])
    csv, md = write_regression_table(paths, tmp_path / "regression_o5")
    table = read_table(csv)
    assert list(table["noise"].unique()) == [0.3, 0.5]
    first = table[table["noise"] == 0.3]
    assert list(first["model"][:3]) == ["MLP", "EMLP (b=0)", "EMLP (b=0)"]
    assert "RPP" in set(first["model"]) and "soft rank-hard" in set(first["model"])
    assert {"mse_mean", "mse_std", "rot_rel_error_mean", "inv_error_mean"} <= set(table.columns)
    assert "| noise" in md.read_text()
    png = plot_regression(csv, tmp_path / "regression_o5.png")
    assert png.stat().st_size > 10_000


def test_model_labels():
    assert model_label(0, "shrink", 1.0) == "MLP"
    assert model_label(3, "rpp", 0.5) == "RPP"
    assert model_label(3, "shrink", 0.0) == "EMLP (b=0)"
    assert model_label(3, "rank-hard", 0.05) == "soft rank-hard"
    with pytest.raises(ValueError, match="not regression"):
        regression_table([pd.DataFrame({"dataset": ["x"]})])


# ---- configs and the workflow ----------------------------------------------------------------


def load(name: str) -> dict:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    return validate_config(config, SCHEMA)


def test_regression_config_resolves():
    runs = resolve(load("regression.yaml"))
    assert {r.dataset for r in runs} == {"o5-s30", "o5-s50"}
    assert len(runs) == 2 * 2 * (1 + 3 + 2 + 1)
    assert {r.softening.group for r in runs} == {"O5"}


def test_a_plain_mlp_runs_at_softness_one_only():
    config = load("regression.yaml")
    config["experiments"][0]["softness"] = [0.5]
    with pytest.raises(ConfigError, match="plain mlp"):
        resolve(config)


def test_noise_and_groups_are_checked():
    config = load("regression.yaml")
    config["experiments"][0]["noise"] = [0.333]
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.noise\[0\]"):
        resolve(config)
    config = load("regression.yaml")
    config["experiments"][0]["groups"] = ["C4"]
    with pytest.raises(ConfigError, match="matrix groups"):
        resolve(config)


def dry_run(config: str, target: str) -> Counter:
    return count_jobs("--forceall", target, "--configfile", config)  # results or not


def test_regression_config_dry_run():
    jobs = dry_run("config/regression.yaml", "all_o5")
    assert jobs["regression"] == 28 and jobs["aggregate_regression"] == 2
    assert jobs["regression_table"] == jobs["regression_figure"] == 1


def test_paper_config_dry_run_lists_the_o5_protocol():
    jobs = dry_run("config/paper.yaml", "all_o5")
    # 3 noise levels x 3 seeds x (MLP + EMLP + RPP + 2 x 2 hard-mask soft (softeq's and the
    # reference's discrete difference) + 7 b of the sweep)
    assert jobs["regression"] == 3 * 3 * (1 + 1 + 1 + 2 * 2 + 7)
    assert jobs["aggregate_regression"] == 3 and jobs["regression_figure"] == 1


# ---- the stage, with the real matrix groups and RepMLP ------------------------------------------


def test_the_exact_equivariant_mlp_is_invariant_and_the_plain_mlp_is_not():
    import softeq
    from softeq.engine.regression import input_actions
    from softeq.stages.regression import build_model

    torch.manual_seed(0)
    emlp = build_model({"regressor": "rep_mlp", "hidden": 32, "depth": 2}, "O5")
    softeq.soften(emlp, group="O5", softness=0.0, filter="shrink")
    mlp = build_model({"regressor": "mlp", "hidden": 32, "depth": 2}, "O5")
    x, y = tensors("test", 100)
    actions = input_actions("O5", "2V", len(x), seed=0)
    exact = evaluate_regression(emlp.double(), x.double(), y, actions)
    assert exact["inv_error"] < 1e-5
    assert torch.std(predict(emlp, x.double())) > 1e-6  # not a constant
    assert evaluate_regression(mlp, x, y, actions)["inv_error"] > 1e-3


def test_the_reference_discrete_difference_is_an_option_of_the_spec():
    """`discrete_difference: unit` (the reference's rho(h) - I) keeps other directions under
    rank-hard at b = 0.05 than softeq's (rho(h) - I) / pi, and both are exact at b = 0."""
    from softeq.stages.regression import build_model, soften_regressor

    x, y = tensors("test", 64)
    actions = input_actions("O5", "2V", len(x), seed=0)
    outputs = {}
    for difference in ("angle", "unit"):
        for b in (0.0, 0.05):
            spec = {"regressor": "rep_mlp", "hidden": 32, "depth": 2, "square_input": True,
                    "discrete_difference": difference}  # fmt: skip
            torch.manual_seed(0)
            model = build_model(spec, "O5")
            soften_regressor(model, spec, Softening("O5", b, filter="rank-hard"))
            outputs[difference, b] = predict(model.double(), x.double())
            if b == 0.0:
                assert evaluate_regression(model, x.double(), y, actions)["inv_error"] < 1e-5
    assert not torch.allclose(outputs["angle", 0.05], outputs["unit", 0.05])
    torch.testing.assert_close(outputs["angle", 0.0], outputs["unit", 0.0])


def test_the_stage_writes_model_and_metrics_and_resumes(tmp_path, capsys):
    import json

    from softeq.cli import main

    args = [
        "regression", "--dataset", "o5-s30",
        "--protocol", json.dumps({"n_train": 100, "n_val": 50, "n_test": 50}),
        "--backbone-spec", json.dumps({"regressor": "mlp", "hidden": 16, "depth": 1}),
        "--backbone", "mlp", "--softening", json.dumps({"group": "O5", "softness": 1.0}),
        "--recipe", json.dumps({"epochs": 3, "batch_size": 50}),
        "--checkpoint", str(tmp_path / "model.pt.ckpt"),
        "--model-out", str(tmp_path / "model.pt"), "--out", str(tmp_path / "metrics.json"),
    ]  # fmt: skip
    main(args)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["dataset"] == "o5-s30"
    assert metrics["group"] == "O5" and metrics["angle_sweep"] == []
    assert metrics["metrics"]["noise"] == 0.3 and metrics["metrics"]["soft_layers"] == 0
    assert {"mse", "rot_rel_error", "inv_error", "selected_epoch"} <= set(metrics["metrics"])
    capsys.readouterr()
    main(args)  # a rerun finds the finished checkpoint: nothing left to train
    assert "resuming after epoch 3" in capsys.readouterr().err
