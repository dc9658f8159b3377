"""Figure 2 (soft equivariance against RPP) from a fixture summary table; its plan and config."""

import copy

import pandas as pd
import pytest

from softeq.cli import main
from softeq.figures.figure2 import figure2_rows
from softeq.pipeline.config import ConfigError, load_config, resolve
from softeq.pipeline.plan import Plan
from softeq.results.aggregate import read_table

METRICS = ("acc", "rot_acc", "combined", "inv_error")


def _summary(tmp_path, filters=("shrink", "rpp"), backbone="cnn"):
    rows = []
    for filter in filters:
        for b in (0.0, 0.25, 0.5, 1.0):
            row = {"task": "classification", "dataset": "digits69", "backbone": backbone}
            row |= {"group": "C4", "filter": filter, "softness": b, "softness_pos": b}
            for i, metric in enumerate(METRICS):
                row[f"{metric}_mean"] = 0.5 + 0.1 * b + 0.01 * i
                row[f"{metric}_std"] = 0.01
            row["n_seeds"] = 2
            rows.append(row)
    rows.append({**rows[0], "filter": "threshold"})  # another filter: not drawn
    path = tmp_path / "classification_digits69_summary.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_figure2_stage_draws_from_the_table(tmp_path):
    summary = _summary(tmp_path)
    rows = figure2_rows(read_table(summary), "cnn")
    assert set(rows["filter"]) == {"shrink", "rpp"} and len(rows) == 8
    out = tmp_path / "figure2_digits69.png"
    main(["figure2", "--summary", str(summary), "--backbone", "cnn", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure2_names_what_is_missing(tmp_path):
    only_soft = _summary(tmp_path, filters=("shrink",))
    with pytest.raises(SystemExit, match=r"no runs with filter \['rpp'\]"):
        main(["figure2", "--summary", str(only_soft), "--backbone", "cnn", "--out", "x.png"])
    with pytest.raises(ValueError, match="no runs of backbone 'vit'"):
        figure2_rows(read_table(_summary(tmp_path)), "vit")


def test_embedded_config_plans_figure2_and_the_rpp_runs():
    from softeq.pipeline import validate_config

    config = load_config("config/config.yaml")
    validate_config(config, "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    assert "results/figures/figure2_digits69.png" in plan.paper_outputs()
    assert "results/figures/figure2_digits69.png" in plan.figure_targets()
    paths = [run.path for run in plan.runs if run.dataset == "digits69"]
    assert "classification/digits69/cnn/group~C4/filter~rpp/b~0.25_pos~0.25/seed~0" in paths
    assert len(paths) == 8

    class W:
        dataset = "digits69"

    assert plan.data_file(W) == "resources/data/digits69.safetensors"
    assert plan.figure2_summary(W) == "results/tables/classification_digits69_summary.csv"
    broken = copy.deepcopy(config)
    broken["experiments"] = [e for e in broken["experiments"] if e.get("dataset") != "digits69"]
    with pytest.raises(ConfigError, match="figure2"):
        resolve(broken)


def test_paper_config_plans_the_mnist_figure2():
    from softeq.pipeline import validate_config

    config = load_config("config/paper.yaml")
    validate_config(config, "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    assert "results/paper/figures/figure2_mnist.png" in plan.paper_outputs()
    runs = [run for run in plan.runs if run.dataset == "mnist"]
    assert {run.softening.filter for run in runs} == {"shrink", "rpp"} and len(runs) == 42
    assert config["backbones"]["cnn"]["kwargs"]["channels"] == [32, 64, 128]
    assert config["datasets"]["mnist"]["break_prob"] == 0.5

    class W:
        dataset = "mnist"
        family = "mnist"

    assert plan.data_file(W) == "resources/data/mnist.safetensors"
    assert plan.dataset_root(W) == ""  # download (md5-pinned) unless a root is set
