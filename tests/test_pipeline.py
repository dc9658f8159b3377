"""Config semantics: validation names the key, defaults are filled, runs expand as documented."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from softeq.pipeline import ConfigError, resolve, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    with open(ROOT / "config/config.yaml") as f:
        return yaml.safe_load(f)


def test_defaults_are_filled(config):
    config.pop("threads")
    assert "filters" not in config["experiments"][0]
    validate_config(config, SCHEMA)
    assert config["threads"] == 1
    assert config["experiments"][0]["filters"] == ["shrink"]
    assert config["evaluate"]["classification"]["eval_rot"] == 30
    assert config["job_resources"]["train"]["mem_mb"] == 2000


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.update(bogus=1), "'bogus' was unexpected"),
        (lambda c: c["experiments"][0]["softness"].append(1.5), "experiments[0].softness[3]"),
        (lambda c: c["experiments"][0].update(softness_pos=-0.1), "experiments[0].softness_pos"),
        (lambda c: c["experiments"][0]["groups"].append("C0"), "experiments[0].groups[1]"),
        (lambda c: c["datasets"]["vocdigits"].update(size=8), "datasets.vocdigits.size"),
        (lambda c: c["backbones"]["vit"].update(size=3), "backbones.vit"),
    ],
)
def test_schema_errors_name_the_key(config, edit, key):
    edit(config)
    with pytest.raises(ConfigError, match="config key") as info:
        validate_config(config, SCHEMA)
    assert key in str(info.value)


def test_resolve_expands_and_checks_semantics(config):
    validate_config(config, SCHEMA)
    runs = resolve(config)
    # digits (+ canonicalization), digits69 (shrink and rpp: Figure 2), vocdigits, corridors
    assert len(runs) == 3 + 1 + 2 * 4 + 3 + 3 + 1
    assert runs[0].path == "classification/digits/vit/group~C4/filter~shrink/b~0_pos~0/seed~0"
    assert runs[-1].path == (
        "trajectory/synthetic-corridor000/constvel/group~SO2/filter~shrink/b~1_pos~1/seed~0"
    )
    bad = copy.deepcopy(config)
    bad["finetune"]["classification"]["recipe"]["lr_typo"] = 1
    with pytest.raises(ConfigError, match=r"finetune\.classification\.recipe.*lr_typo"):
        resolve(bad)
    bad = copy.deepcopy(config)
    bad["experiments"][0]["backbones"] = ["vitseg"]
    with pytest.raises(ConfigError, match="segmentation model, not a classification one"):
        resolve(bad)
    bad = copy.deepcopy(config)
    i = next(i for i, e in enumerate(bad["experiments"]) if e["task"] == "trajectory")
    bad["experiments"][i]["scenes"] = ["eth"]
    with pytest.raises(ConfigError, match=rf"experiments\[{i}\]\.scenes\[0\]: 'eth'"):
        resolve(bad)
    bad = copy.deepcopy(config)
    bad["experiments"][0]["backbones"].append("vgg")
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.backbones\[1\]: unknown backbone"):
        resolve(bad)
    bad = copy.deepcopy(config)
    bad["experiments"][0]["groups"] = ["SO2"]
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.groups\[0\]"):
        resolve(bad)
    bad = copy.deepcopy(config)
    bad["experiments"].append(copy.deepcopy(bad["experiments"][0]))
    with pytest.raises(ConfigError, match="listed twice"):
        resolve(bad)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.update(bogus=1), "bogus"),
        (lambda c: c["experiments"][0]["softness"].append(1.5), "experiments[0].softness[3]"),
        (lambda c: c["experiments"][0]["backbones"].append("vgg"), "experiments[0].backbones[1]"),
        (lambda c: c["experiments"][0]["groups"].append("C4x"), "experiments[0].groups[1]"),
        (
            lambda c: c["finetune"]["trajectory"]["recipe"].update(epochs=0),
            "finetune.trajectory.recipe.epochs",
        ),
        (
            lambda c: c["finetune"]["trajectory"]["recipe"].update(lr="fast"),
            "finetune.trajectory.recipe.lr",
        ),
        (lambda c: c["figure1"].update(group="C4$(touch x)"), "figure1.group"),
    ],
)
def test_bad_config_fails_before_any_job_runs(config, tmp_path, edit, key):
    config["results"] = str(tmp_path / "results")
    config["resources"] = str(tmp_path / "resources")
    config["allow_outside"] = True  # results in a temporary folder
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["snakemake", "all", "--cores", "1", "--configfile", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert key in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "resources").exists()


def test_plan_gives_rules_their_paths_and_arguments(config):
    from types import SimpleNamespace

    from softeq.pipeline import Plan
    from softeq.spec import Softening

    validate_config(config, SCHEMA)
    plan = Plan(config)
    assert plan.families == ["digits", "digits69", "synthetic", "vocdigits"]
    assert plan.filter_ablations() == []  # in config/extended.yaml
    digits = plan.targets({"digits"})
    assert "results/tables/classification_digits_summary.csv" in digits
    selections = [p for p in digits if "/select~" in p]  # the digits' softness selections
    assert sorted(p.split("/")[4] for p in selections) == ["select~halving", "select~zeroshot"]
    assert all("classification_digits" in path for path in digits if path not in selections)
    wildcards = SimpleNamespace(
        task="classification",
        dataset="digits",
        backbone="vit",
        group="C4",
        filter="rank-hard",
        softness="0.5",
        softness_pos="0.25",
        seed="0",
    )
    assert Softening.from_json(plan.softening(wildcards)).path == (
        "group~C4/filter~rank-hard/b~0.5_pos~0.25"
    )
    assert plan.run_dir.format(**vars(wildcards)) == (
        "results/classification/digits/vit/group~C4/filter~rank-hard/b~0.5_pos~0.25/seed~0"
    )
    # recipes merge the task's with the backbone's overrides; shell arguments are quoted
    config["backbones"]["vit"]["recipe"] = {"lr": 0.1}
    assert Plan(config).recipe("finetune", "classification", "vit")["lr"] == 0.1
    assert Plan(config).recipe("pretrain", "classification", "vit")["lr"] == 1e-3
    init = SimpleNamespace(init=["my results/model.pt"])
    assert plan.init_arg(wildcards, init) == "--init 'my results/model.pt'"
    assert plan.init_arg(wildcards, SimpleNamespace(init=[])) == ""


def test_extended_config_adds_its_runs_to_the_embedded_default(config):
    """config/extended.yaml merged over config.yaml as Snakemake merges config files: the
    default's runs stay, the finer ViT levels, the ResNet and the filter ablation join them."""
    from snakemake.utils import update_config

    from softeq.pipeline import Plan

    validate_config(copy.deepcopy(config), SCHEMA)
    default = {run.path for run in resolve(copy.deepcopy(config))}
    with open(ROOT / "config/extended.yaml") as f:
        update_config(config, yaml.safe_load(f))
    validate_config(config, SCHEMA)
    extended = {run.path for run in resolve(config)}
    added = extended - default
    assert default < extended and len(added) == 2 + 5 + 3
    assert {path.split("/")[2] for path in added} == {"vit", "resnet"}
    plan = Plan(config)
    assert plan.filter_ablations() == [("classification", "digits")]
    assert plan.figure1_backbones() == ["vit", "resnet"]


def test_extra_experiments_errors_name_their_key(config):
    config["extra_experiments"] = [{**config["experiments"][0], "backbones": ["nope"]}]
    validate_config(config, SCHEMA)
    with pytest.raises(ConfigError, match=r"extra_experiments\[0\]\.backbones\[0\]: unknown"):
        resolve(config)
