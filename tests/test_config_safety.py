"""Config and command-line input that must fail early and clearly, never run or write elsewhere."""

import json
import math
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from softeq.cli import build_parser, main
from softeq.pipeline import ConfigError, Plan, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    return load_config(ROOT / "config/config.yaml")


def dry_run(config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """``snakemake -n all`` on ``config`` from the repository, as a user would run it."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["snakemake", "-n", "all", "--cores", "1", "--configfile", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_shell_in_figure1_group_fails_in_a_dry_run_and_runs_nothing(config, tmp_path):
    marker = tmp_path / "ran"
    config["figure1"]["group"] = f"C4$(touch {marker})x"
    result = dry_run(config, tmp_path)
    assert result.returncode != 0
    assert "config key figure1.group" in result.stdout + result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "config key results"),
        ("../escape", "outside the working directory"),
        ("my results", "config key results"),
        ("out;rm", "config key results"),
    ],
)
def test_results_folder_must_be_a_plain_folder_inside_the_tree(config, value, message):
    config["results"] = value
    with pytest.raises(ConfigError, match=message):
        Plan(validate_config(config, SCHEMA))


def test_results_outside_fail_in_a_dry_run_unless_allowed(config, tmp_path):
    config["results"] = "../x"
    result = dry_run(config, tmp_path)
    assert result.returncode != 0 and "allow_outside" in result.stdout + result.stderr
    config["results"] = str(tmp_path / "results")
    config["allow_outside"] = True
    assert Plan(validate_config(config, SCHEMA)).results == str(tmp_path / "results")


def test_yaml_errors_name_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("results: results\nbackbones:\n  vit: {timm: [1, 2}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:3:\d+: "):
        load_config(bad)
    with pytest.raises(SystemExit, match=rf"{bad}:3:\d+"):
        main(["check-config", str(bad), "--schema", str(SCHEMA)])
    main(["check-config", str(ROOT / "config/paper.yaml"), "--schema", str(SCHEMA)])
    assert "valid" in capsys.readouterr().out


def test_cli_errors_for_missing_arguments_and_help_for_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["figure1", "--out", "f.png"])
    assert info.value.code == 2
    assert "one of the arguments --model --backbone-spec is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["figure1", "--model", "m.pt", "--group", "C4$(x)", "--out", "f.png"])
    assert "unknown group" in capsys.readouterr().err
    parser = build_parser()
    stages = parser._subparsers._group_actions[0].choices  # argparse keeps them only here
    for name, sub in stages.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"softeq {name}: {action.option_strings or action.dest}"


def test_non_finite_metrics_fail_evaluation(tmp_path):
    from torch import nn

    from softeq.stages.common import write_metrics

    args = Namespace(dataset="digits", backbone="vit", seed=0, out=str(tmp_path / "m.json"))
    result = {"metrics": {"acc": 0.5, "inv_error": math.nan}, "angle_sweep": []}
    with pytest.raises(ValueError, match=r"non-finite metrics \['inv_error'\]"):
        write_metrics(args, "classification", None, result, nn.Linear(2, 2), "cpu")
    assert not (tmp_path / "m.json").exists()


def test_a_nan_metric_keeps_its_column(tmp_path):
    from softeq.results.aggregate import aggregate

    identity = {"task": "classification", "dataset": "digits", "backbone": "vit"}
    identity |= {"group": "C4", "filter": "shrink", "softness_pos": 0.5, "bounds": []}
    paths = []
    for seed in (0, 1):
        run = {**identity, "softness": 0.5, "seed": seed, "angle_sweep": []}
        run["metrics"] = {"acc": 0.9, "inv_error": None}
        paths.append(tmp_path / f"{seed}.json")
        paths[-1].write_text(json.dumps(run))
    aggregate(paths, tmp_path / "tables")
    runs = pd.read_csv(tmp_path / "tables/classification_digits_runs.csv")
    assert "inv_error" in runs.columns and runs["inv_error"].isna().all()
