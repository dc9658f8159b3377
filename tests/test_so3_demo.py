"""The SO(3) demo: exact at b = 0, the plain model at b = 1, the error growing with b; the figure
from a table alone; the config key checked and planned."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from dry_runs import snakemake_dry_run
from softeq.cli import main
from softeq.figures.so3_demo import so3_demo_rows
from softeq.pipeline import ConfigError, Plan, load_config, validate_config
from softeq.stages.so3_demo import SO3_COLUMNS, SO3DemoSettings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def _fixture_table(path: Path) -> Path:
    """A table of the demo's form: errors spread in proportion to b (made-up numbers)."""
    rng = np.random.default_rng(0)
    frames = []
    for b in (0.0, 0.25, 0.5, 0.75, 1.0):
        norm = rng.uniform(0.5, 2.0, 40)
        error = b * norm * rng.uniform(0.0, 0.5, 40) + (1e-16 if b == 0 else 0.0)
        frames.append(
            pd.DataFrame(
                {
                    "b": b,
                    "model": np.repeat([0, 1], 20),
                    "sample": np.arange(40) % 20,
                    "error": error,
                    "output_norm": norm,
                }
            )
        )
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_figure_renders_from_a_table_alone(tmp_path):
    table = _fixture_table(tmp_path / "so3_demo.csv")
    out = tmp_path / "so3_demo.png"
    main(["figure-so3", "--table", str(table), "--out", str(out)])
    assert out.stat().st_size > 10_000
    rows = so3_demo_rows(pd.read_csv(table))
    assert np.allclose(rows["relative"], rows["error"] / rows["output_norm"])


def test_figure_names_what_is_wrong(tmp_path):
    table = pd.read_csv(_fixture_table(tmp_path / "t.csv"))
    table.drop(columns="output_norm").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SystemExit, match="output_norm"):
        main(["figure-so3", "--table", str(tmp_path / "bad.csv"), "--out", "x.png"])
    with pytest.raises(ValueError, match="no rows"):
        so3_demo_rows(table.iloc[:0])


def _config(so3_demo) -> dict:
    config = load_config(ROOT / "config/config.yaml")
    config["so3_demo"] = so3_demo
    return config


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"hidden": 0}, "so3_demo.hidden"),
        ({"depth": -1}, "so3_demo.depth"),
        ({"softness": [0.0, 1.5]}, r"so3_demo.softness\[1\]"),
        ({"samples": "many"}, "so3_demo.samples"),
        ({"filter": "rpp"}, "so3_demo.filter"),
        ({"widht": 3}, "so3_demo"),
    ],
)
def test_bad_config_names_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        validate_config(_config(settings), SCHEMA)
    with pytest.raises(ValueError, match=key):
        SO3DemoSettings.from_mapping(settings)


def test_config_plans_the_demo_only_when_set():
    default = validate_config(load_config(ROOT / "config/config.yaml"), SCHEMA)
    assert default["so3_demo"] is None
    plan = Plan(default)
    assert plan.so3_demo_outputs() == [] and plan.so3_demo_args() == ""
    config = validate_config(_config({"hidden": 8}), SCHEMA)
    plan = Plan(config)
    assert "results/figures/so3_demo.png" in plan.paper_outputs()
    assert "results/figures/so3_demo.png" in plan.figure_targets()
    settings = SO3DemoSettings.from_mapping(config["so3_demo"])  # the schema's defaults fit
    assert settings.hidden == 8 and len(settings.softness) == 11
    args = plan.so3_demo_args().split()
    assert args[args.index("--hidden") + 1] == "8"
    assert args[args.index("--softness") + 1] == ",".join(str(b) for b in settings.softness)


@pytest.mark.parametrize("base", ["config.yaml", "regression.yaml"])
def test_the_rules_plan_the_table_then_the_figure(base, tmp_path):
    """Target all_so3 plans the demo's table, then its figure; config/regression.yaml sets
    so3_demo with the schema's defaults, config/config.yaml does not (a test adds it)."""
    if base == "regression.yaml":
        config = validate_config(load_config(ROOT / "config" / base), SCHEMA)
        assert SO3DemoSettings.from_mapping(config["so3_demo"]) == SO3DemoSettings()
    config = load_config(ROOT / "config" / base)
    config["so3_demo"] = {"samples": 10, "models": 1}
    config.update(results=str(tmp_path / "results"), allow_outside=True)
    path = tmp_path / "so3.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake_dry_run("all_so3", "-p", "--cores", "1", "--configfile", str(path))
    assert "rule so3_demo:" in result.stdout and "rule figure_so3:" in result.stdout
    assert "--samples 10" in result.stdout and "--models 1" in result.stdout
    assert f"{tmp_path}/results/figures/so3_demo.png" in result.stdout


def test_demo_is_exact_at_0_the_plain_model_at_1_and_grows_with_b(tmp_path):
    from softeq.metrics.rep_equivariance import rep_equivariance_errors
    from softeq.stages.so3_demo import plain_so3_model, so3_demo_inputs, so3_reps

    settings = SO3DemoSettings(
        hidden=16, depth=2, softness=(0.0, 0.25, 0.5, 0.75, 1.0), samples=200, models=2
    )
    out = tmp_path / "so3_demo.csv"
    main(
        [
            "so3-demo",
            "--hidden",
            "16",
            "--depth",
            "2",
            "--softness",
            "0,0.25,0.5,0.75,1",
            "--samples",
            "200",
            "--models",
            "2",
            "--out",
            str(out),
        ]
    )
    table = pd.read_csv(out)
    assert tuple(table.columns) == SO3_COLUMNS
    assert len(table) == 5 * 2 * 200
    assert table.loc[table["b"] == 0.0, "error"].max() < 1e-5
    for index in range(settings.models):
        plain = plain_so3_model(settings, index)
        x, rotations = so3_demo_inputs(settings, index)
        _, in_rep, out_rep = so3_reps(settings.vectors)
        error, norm = rep_equivariance_errors(plain, in_rep, out_rep, x, rotations)
        at1 = table[(table["b"] == 1.0) & (table["model"] == index)].sort_values("sample")
        np.testing.assert_allclose(at1["error"], error, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(at1["output_norm"], norm, rtol=1e-6)
    assert error.mean() > 1e-2  # the plain model is not equivariant
    medians = table.groupby("b")["error"].median().to_numpy()
    assert np.all(np.diff(medians) > 0), medians
