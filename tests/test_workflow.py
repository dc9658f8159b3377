"""The classification DAG end to end on a reduced config, through the real snakemake CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dry_runs import kill_when_exists

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["snakemake", *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """Run the reduced DAG once; the tests below read what it left."""
    tmp = tmp_path_factory.mktemp("workflow")
    with open(ROOT / "config/config.yaml") as f:
        config = yaml.safe_load(f)
    config["results"] = str(tmp / "results")
    config["resources"] = str(tmp / "resources")
    config["allow_outside"] = True  # results in a temporary folder
    config["backbones"] = {
        "vit": {
            "timm": "vit_tiny_patch16_224",
            "input_size": 32,
            "kwargs": {
                "img_size": 32,
                "patch_size": 8,
                "embed_dim": 24,
                "depth": 1,
                "num_heads": 2,
            },
        }
    }
    config["pretrain"]["classification"]["recipe"].update(epochs=4, batch_size=64, lr=3e-3)
    config["finetune"]["classification"]["recipe"].update(epochs=1, batch_size=128)
    config["evaluate"]["classification"] = {"sweep": [0, 45, 90], "batch_size": 512}
    config["experiments"] = [
        {**exp, "backbones": ["vit"], "softness": [0.0, 0.5, 1.0]}
        for exp in config["experiments"]
        if exp["dataset"] == "digits"
        and exp["backbones"] == ["vit"]
        and not exp.get("filters")
        and not exp.get("select")  # the selections' DAG: tests/test_selection.py
    ]
    config["figure1"]["backbones"] = ["vit"]
    config["figure2"] = {}  # its digits69 runs are not in the reduced experiments
    config["construction_timing"] = {"widths": [4, 8], "dense_limit": 8}
    path = tmp / "reduced.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake("all", "--cores", "2", "--configfile", str(path))
    return tmp, path


def test_tables_figures_and_exact_invariance_at_b0(reduced):
    tmp, _ = reduced
    tables, figures = tmp / "results/tables", tmp / "results/figures"
    for name in ("summary", "runs", "bounds", "angles"):
        assert (tables / f"classification_digits_{name}.csv").stat().st_size > 0
        assert (tables / f"classification_digits_{name}.md").stat().st_size > 0
    for name in ("tunability", "bounds", "angles"):
        assert (figures / f"classification_digits_{name}.png").stat().st_size > 10_000
    assert (figures / "figure1_vit.png").stat().st_size > 10_000
    assert (figures / "ablation_construction_timing.png").stat().st_size > 10_000
    for name in ("csv", "md", "tex"):
        assert (tables / f"paper_classification.{name}").stat().st_size > 0
    runs = pd.read_csv(tables / "classification_digits_runs.csv").set_index("softness")
    assert runs.loc[0.0, "inv_error_rot90"] < 1e-6  # exact C4 invariance at b = 0
    assert runs.loc[1.0, "inv_error_rot90"] > 1e-4  # the plain model is not invariant
    metrics = json.loads(
        next((tmp / "results/classification/digits/vit").rglob("metrics.json")).read_text()
    )
    assert metrics["provenance"]["softeq_version"]
    projectors = (
        tmp / "resources/projectors/classification/digits/vit/group~C4/filter~shrink/b~0.5_pos~0.5"
    )
    assert (projectors / "manifest.json").exists()


def test_figures_regenerate_from_tables_alone(reduced):
    tmp, config = reduced
    for png in (tmp / "results/figures").glob("*.png"):
        png.unlink()
    plan = snakemake("figures", "--cores", "1", "--configfile", str(config), "-n")
    jobs = [
        line.split()[1].rstrip(":") for line in plan.stdout.splitlines() if line.startswith("rule ")
    ]
    assert set(jobs) == {"figures_task", "figure1", "figures"}, plan.stdout
    snakemake("figures", "--cores", "1", "--configfile", str(config))
    assert len(list((tmp / "results/figures").glob("*.png"))) == 4


def test_kill_the_snakemake_process_group_during_finetune_then_unlock_and_rerun(reduced, tmp_path):
    """SIGKILL of snakemake and its jobs after a fine-tune's first epoch; --unlock and a rerun
    resume from the checkpoint and give the same metrics as a run that was never killed."""

    _, reduced_path = reduced
    config = yaml.safe_load(reduced_path.read_text())
    config["finetune"]["classification"]["recipe"].update(epochs=4, batch_size=32)
    config["experiments"] = [{**config["experiments"][0], "softness": [0.5]}]
    run = "classification/digits/vit/group~C4/filter~shrink/b~0.5_pos~0.5/seed~0"
    metrics = {}
    for name in ("whole", "killed"):
        work = tmp_path / name
        config["results"], config["resources"] = str(work / "results"), str(work / "resources")
        path = work / "config.yaml"
        work.mkdir()
        path.write_text(yaml.safe_dump(config))
        target = work / "results" / run / "metrics.json"
        args = [str(target), "--cores", "1", "--configfile", str(path)]
        if name == "killed":
            checkpoint = work / "results" / run / "model.pt.ckpt"
            kill_when_exists(args, checkpoint, "the first fine-tuning epoch", timeout=600)
            assert not (work / "results" / run / "model.pt").exists()
            snakemake("--unlock", "--configfile", str(path))
        snakemake(*args)
        metrics[name] = json.loads(target.read_text())["metrics"]
    assert metrics["killed"] == metrics["whole"]
