"""Softness selection (docs/selection.md): the halving and zero-shot bookkeeping against
hand-computed fixtures, the config checks, rungs that continue one another bit for bit, and the
DAG end to end (halving, zeroshot and the full sweep on a reduced config), killed between rungs
and rerun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dry_runs import kill_when_exists
from softeq.pipeline import ConfigError, load_config, resolve, validate_config
from softeq.pipeline.selections import resolve_selections, selection_splits
from softeq.results.selection import decide, selection_table, summarize, trained_epochs
from softeq.selection import keep, lower_is_better, rung_epochs, rung_sizes, zeroshot_choice

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

# ---- bookkeeping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "eta", "sizes"),
    [(9, 3, [9, 3, 1]), (5, 3, [5, 2, 1]), (4, 2, [4, 2, 1]), (3, 3, [3, 1]), (1, 3, [1])],
)
def test_rung_sizes_keep_one_in_eta(candidates, eta, sizes):
    assert rung_sizes(candidates, eta) == sizes


@pytest.mark.parametrize(
    ("epochs", "rungs", "eta", "ends"),
    [(9, 3, 3, [1, 3, 9]), (15, 3, 3, [2, 5, 15]), (100, 3, 3, [11, 33, 100]), (3, 2, 3, [1, 3])],
)
def test_rung_ends_are_eta_apart_and_the_last_is_the_schedule(epochs, rungs, eta, ends):
    assert rung_epochs(epochs, rungs, eta) == ends


def test_a_schedule_too_short_for_its_rungs_is_refused():
    with pytest.raises(ValueError, match="3 epochs gives no 3 rising rungs"):
        rung_epochs(3, 3, 3)  # would end at epochs 1, 1, 3


def test_keep_ranks_by_the_metric_direction_and_breaks_ties_towards_equivariance():
    accuracy = {0.0: 0.5, 0.25: 0.7, 0.5: 0.7, 0.75: 0.9, 1.0: 0.6}
    assert keep(accuracy, "combined", 2) == [0.25, 0.75]  # the best two, in increasing b
    assert sorted(keep(accuracy, "combined", 3)) == [0.25, 0.5, 0.75]
    ade = {0.0: 1.0, 0.5: 0.8, 1.0: 0.9}
    assert lower_is_better("combined_ade") and not lower_is_better("combined")
    assert keep(ade, "combined_ade", 1) == [0.5]
    with pytest.raises(ValueError, match="non-finite"):
        keep({0.0: float("nan"), 1.0: 0.5}, "combined", 1)


def test_zeroshot_rules_pick_the_b_they_state():
    scores = {0.0: 0.50, 0.25: 0.69, 0.5: 0.70, 0.75: 0.71, 1.0: 0.60}
    assert zeroshot_choice(scores, "combined", "best") == 0.75
    # the smallest b within 2 % of the best 0.71 (>= 0.6958): 0.5; within 3 % (>= 0.6887): 0.25
    assert zeroshot_choice(scores, "combined", "tolerance", 0.02) == 0.5
    assert zeroshot_choice(scores, "combined", "tolerance", 0.03) == 0.25
    ade = {0.0: 1.0, 0.5: 0.9, 1.0: 0.95}
    assert zeroshot_choice(ade, "combined_ade", "best") == 0.5
    assert zeroshot_choice(ade, "combined_ade", "tolerance", 0.06) == 0.5  # <= 0.954
    assert zeroshot_choice(ade, "combined_ade", "tolerance", 0.12) == 0.0  # <= 1.008


def _metrics(path: Path, softness: float, **metrics: float) -> Path:
    record = {"task": "classification", "dataset": "digits", "backbone": "vit", "group": "C4"}
    record.update(filter="shrink", softness=softness, softness_pos=softness, seed=0)
    path.write_text(json.dumps({**record, "metrics": metrics}))
    return path


def _benchmark(path: Path, seconds: float) -> Path:
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:01\t1.0\n")
    return path


def test_decisions_summary_and_table_from_files(tmp_path):
    """A two-rung halving over three candidates: its decisions, its cost in epochs and seconds,
    and the regret and compute ratio against a full sweep, all checked by hand."""
    val0 = [
        _metrics(tmp_path / f"v0_{b}.json", b, combined=s)
        for b, s in [(0.0, 0.3), (0.5, 0.5), (1.0, 0.4)]
    ]
    rung0 = decide(val0, "combined", keep_count=1, rung=0, until_epoch=1)
    assert rung0["kept"] == [0.5] and len(rung0["scores"]) == 3
    (tmp_path / "rung0.json").write_text(json.dumps(rung0))
    val1 = [_metrics(tmp_path / "v1.json", 0.5, combined=0.8)]
    rung1 = decide(val1, "combined", keep_count=1, rung=1, until_epoch=3)
    (tmp_path / "rung1.json").write_text(json.dumps(rung1))
    assert trained_epochs([rung0, rung1], 3) == 3 * 1 + 1 * 2
    test = _metrics(tmp_path / "test.json", 0.5, combined=0.70)
    sweep = [
        _metrics(tmp_path / f"s_{b}.json", b, combined=s)
        for b, s in [(0.0, 0.6), (0.5, 0.7), (1.0, 0.75)]
    ]
    costs = [_benchmark(tmp_path / f"c{i}.tsv", 10.0) for i in range(4)]
    sweep_costs = [_benchmark(tmp_path / f"sc{i}.tsv", 30.0) for i in range(3)]
    record = summarize(
        [tmp_path / "rung0.json", tmp_path / "rung1.json"], test, costs, 3, sweep, sweep_costs
    )
    assert record["chosen"] == 0.5 and record["test_score"] == 0.70
    assert (record["epochs"], record["sweep_epochs"], record["validations"]) == (5, 9, 4)
    assert record["cost_s"] == 40.0 and record["sweep"]["cost_s"] == 90.0
    assert record["sweep"]["best"] == 1.0
    assert record["sweep"]["regret"] == pytest.approx(0.05)
    assert record["sweep"]["compute_ratio"] == pytest.approx(90 / 40)
    row = selection_table([record]).iloc[0]
    assert row["epoch_ratio"] == pytest.approx(9 / 5) and row["chosen_b"] == 0.5
    with pytest.raises(ValueError, match="no metric 'rot_acc'"):
        decide(val0, "rot_acc", keep_count=1)


# ---- the config --------------------------------------------------------------------------


@pytest.fixture
def embedded():
    config = load_config(ROOT / "config/config.yaml")
    return validate_config(config, SCHEMA)


def test_the_embedded_config_selects_without_adding_runs(embedded):
    selections = resolve_selections(embedded)
    assert sorted(s.strategy for s in selections) == ["halving", "zeroshot"]
    halving = next(s for s in selections if s.strategy == "halving")
    assert halving.candidates == (0.0, 0.5, 1.0) and halving.metric == "combined"
    assert halving.sizes == [3, 1] and halving.rung_ends == [1, 3]
    runs = resolve(embedded)  # the selections' candidates are not runs of their own
    assert len({run.path for run in runs}) == len(runs)
    assert selection_splits("imagenet") == ("fit", "holdout")
    assert selection_splits("ethucy-eth") == ("train", "val")


def _with(config, group: str, softness: list[float], **select):
    exp = {"task": "classification", "dataset": "digits", "backbones": ["vit"], "groups": [group]}
    config["experiments"].append({**exp, "softness": softness, "select": select})
    return validate_config(config, SCHEMA)


FIVE = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    ("group", "softness", "select", "message"),
    [  # 5 candidates at eta 2: 4 rungs, which 3 epochs cannot hold
        ("C2", FIVE, {"strategy": "halving", "eta": 2}, r"experiments\[{i}\].select.eta: vit: "),
        ("C4", [0.0, 1.0], {"strategy": "halving"}, "the same selection is asked for twice"),
        ("C2", [0.0, 0.0, 1.0], {"strategy": "halving"}, r"experiments\[{i}\].softness: a cand"),
    ],
)
def test_bad_selections_name_their_key(embedded, group, softness, select, message):
    message = message.replace("{i}", str(len(embedded["experiments"])))  # the appended one
    with pytest.raises(ConfigError, match=message):
        resolve_selections(_with(embedded, group, softness, **select))


def test_zeroshot_needs_a_model_trained_for_the_task(embedded):
    del embedded["pretrain"]["classification"]  # the digits ViT would start with a fresh head
    with pytest.raises(ConfigError, match="zeroshot scores a model trained for the task"):
        resolve_selections(_with(embedded, "C2", FIVE, strategy="zeroshot"))


def test_zeroshot_refuses_models_trained_from_scratch(embedded):
    exp = {"task": "trajectory", "dataset": "synthetic", "scenes": ["corridor000"]}
    exp.update(backbones=["transformer"], groups=["SO2"], softness=[0.0, 1.0])
    embedded["experiments"].append({**exp, "select": {"strategy": "zeroshot"}})
    with pytest.raises(ConfigError, match="trajectory models train from scratch"):
        resolve_selections(validate_config(embedded, SCHEMA))


def test_imagefolder_holdout_is_per_class_fixed_and_disjoint():
    from softeq.data.imagefolder import holdout_indices

    targets = [0] * 5 + [1] * 3 + [2] * 1
    held = holdout_indices(targets, 2, seed=0)
    assert held == holdout_indices(targets, 2, seed=0)
    assert sum(targets[i] == 0 for i in held) == 2 and sum(targets[i] == 1 for i in held) == 2
    assert not any(targets[i] == 2 for i in held)  # a class of one image keeps it for training


# ---- rungs continue one another ----------------------------------------------------------


VIT = {
    "timm": "vit_tiny_patch16_224",
    "input_size": 32,
    "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2},
}


def _finetune(tmp, data, out, *extra):
    from softeq.cli import main

    recipe = {"epochs": 3, "batch_size": 128, "lr": 1e-3, "select_epoch": True}
    softening = {"group": "C4", "softness": 0.5, "filter": "shrink"}
    args = ["finetune", "--data", str(data), "--dataset", "digits", "--seed", "3"]
    args += ["--backbone-spec", json.dumps(VIT), "--softening", json.dumps(softening)]
    args += ["--recipe", json.dumps(recipe), "--out", str(tmp / out)]
    main([*args, "--checkpoint", str(tmp / f"{out}.ckpt"), *extra])
    return torch.load(tmp / out, weights_only=True)


def test_rungs_continue_the_previous_state_and_end_bit_identical_to_one_run(tmp_path, monkeypatch):
    """Rung 0 trains epoch 1 of 3 and hands its state on; rung 1 trains epochs 2 and 3 only
    (counted) and ends with the weights, history and best epoch of a fine-tune run in one go."""
    from softeq.cli import main
    from softeq.engine import loop

    data = tmp_path / "digits.safetensors"
    main(["prepare-data", "--dataset", "digits", "--out", str(data)])
    whole = _finetune(tmp_path, data, "whole.pt")
    _finetune(tmp_path, data, "rung0.pt", "--until-epoch", "1", "--state-out", str(tmp_path / "s0"))
    trained = []
    original = loop._Run.epoch
    monkeypatch.setattr(loop._Run, "epoch", lambda run, e: trained.append(e) or original(run, e))
    last = _finetune(
        tmp_path, data, "rung1.pt", "--until-epoch", "3", "--resume-from", str(tmp_path / "s0")
    )
    assert trained == [1, 2]  # 0-based: epochs 2 and 3; epoch 1 came with the state
    metrics = tmp_path / "val.json"  # a metrics JSON names the training seed, not --seed's
    args = ["evaluate", "--data", str(data), "--model", str(tmp_path / "rung1.pt"), "--seed", "5"]
    main(
        [*args, "--split", "val", "--dataset", "digits", "--backbone", "vit", "--out", str(metrics)]
    )
    record = json.loads(metrics.read_text())
    assert (record["seed"], record["eval_seed"]) == (3, 5)
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3]
    assert last["history"] == whole["history"]
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, last["model"][name]), name


# ---- the DAG -------------------------------------------------------------------------------


def snakemake(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["snakemake", *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _reduced(tmp: Path, experiments: list[dict]) -> Path:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.update(results=str(tmp / "results"), resources=str(tmp / "resources"))
    config["allow_outside"] = True
    config["backbones"] = {"vit": VIT}
    config["pretrain"] = {"classification": {"recipe": {"epochs": 2, "batch_size": 64, "lr": 3e-3}}}
    config["finetune"] = {
        "classification": {"recipe": {"epochs": 4, "batch_size": 128, "lr": 1e-3}}
    }
    config["evaluate"]["classification"] = {"sweep": [0, 90], "batch_size": 512}
    config["experiments"] = experiments
    config["figure1"]["backbones"], config["figure2"] = [], {}
    config["construction_timing"] = {"widths": [4, 8], "dense_limit": 8}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


GRID = {"task": "classification", "dataset": "digits", "backbones": ["vit"], "groups": ["C4"]}
CANDIDATES = [0.0, 0.25, 0.5, 1.0]
SELECTIONS = "classification/digits/vit/select~{}/group~C4/filter~shrink/seed~0"


def _run(results: Path, b: float) -> Path:
    return results / f"classification/digits/vit/group~C4/filter~shrink/b~{b:g}_pos~{b:g}/seed~0"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The full sweep, halving (eta 2: 4, 2, 1 candidates, rungs ending at epochs 1, 2, 4) and
    zeroshot (rule tolerance) over four candidates, and the selection table and figure."""
    tmp = tmp_path_factory.mktemp("selection")
    grid = {**GRID, "softness": CANDIDATES}
    path = _reduced(
        tmp,
        [
            grid,
            {**grid, "select": {"strategy": "halving", "eta": 2}},
            {**grid, "select": {"strategy": "zeroshot", "rule": "tolerance", "tolerance": 0.05}},
        ],
    )
    snakemake(str(tmp / "results/tables/selection.csv"), "--cores", "2", "--configfile", str(path))
    return tmp / "results"


def test_halving_keeps_the_right_number_per_rung_and_its_winner_is_the_full_fine_tune(study):
    folder = study / SELECTIONS.format("halving")
    rungs = [json.loads((folder / f"rung~{r}.json").read_text()) for r in range(3)]
    assert [len(r["scores"]) for r in rungs] == [4, 2, 1]
    assert [len(r["kept"]) for r in rungs] == [2, 1, 1]
    assert [r["until_epoch"] for r in rungs] == [1, 2, 4]
    for r in (1, 2):  # a rung trains exactly the previous rung's survivors
        trained = sorted(b for b in CANDIDATES if (_run(study, b) / f"halving/rung~{r}").is_dir())
        assert trained == sorted(rungs[r - 1]["kept"])
        assert [e["softness"] for e in rungs[r]["scores"]] == sorted(rungs[r - 1]["kept"])
    (winner,) = rungs[-1]["kept"]
    final = torch.load(_run(study, winner) / "halving/rung~2/model.pt", weights_only=True)
    full = torch.load(_run(study, winner) / "model.pt", weights_only=True)  # the sweep's run
    for name, tensor in full["model"].items():
        assert torch.equal(tensor, final["model"][name]), name
    summary = json.loads((folder / "selection.json").read_text())
    sweep = json.loads((_run(study, winner) / "metrics.json").read_text())["metrics"]
    assert summary["chosen"] == winner and summary["test"] == sweep
    assert summary["epochs"] == 4 * 1 + 2 * 1 + 1 * 2 and summary["sweep_epochs"] == 16


def test_zeroshot_fine_tunes_the_b_its_rule_picks_from_untrained_scores(study):
    folder = study / SELECTIONS.format("zeroshot")
    choice = json.loads((folder / "choice.json").read_text())
    scores = {e["softness"]: e["score"] for e in choice["scores"]}
    assert sorted(scores) == CANDIDATES
    for b in CANDIDATES:  # scored on the validation split, the softened pre-trained weights
        record = json.loads((_run(study, b) / "zeroshot/val.json").read_text())
        assert record["provenance"]["config"]["split"] == "val"
        assert record["metrics"]["combined"] == scores[b]
        model = torch.load(_run(study, b) / "zeroshot/model.pt", weights_only=True)
        assert model["history"] == []
    assert choice["kept"] == [zeroshot_choice(scores, "combined", "tolerance", 0.05)]
    summary = json.loads((folder / "selection.json").read_text())
    sweep = json.loads((_run(study, choice["kept"][0]) / "metrics.json").read_text())
    assert summary["test"] == sweep["metrics"] and summary["epochs"] == 4


def test_the_table_compares_each_strategy_with_the_full_sweep(study):
    import pandas as pd

    table = pd.read_csv(study / "tables/selection.csv")
    assert sorted(table["strategy"]) == ["halving", "zeroshot"]
    best = table["sweep_best_b"].iloc[0]
    tests = {
        b: json.loads((_run(study, b) / "metrics.json").read_text())["metrics"]["combined"]
        for b in CANDIDATES
    }
    assert tests[best] == max(tests.values())
    for row in table.itertuples():
        assert row.regret == pytest.approx(tests[best] - tests[row.chosen_b])
        assert row.compute_ratio == pytest.approx(row.sweep_cost_s / row.cost_s)
    assert (study / "figures/selection.png").stat().st_size > 10_000
    over_seeds = pd.read_csv(study / "tables/selection_study.csv")  # one seed: the same regret
    assert sorted(over_seeds["strategy"]) == ["halving", "zeroshot"]
    for row in over_seeds.itertuples():
        assert row.sweep_best_mean == tests[best] and row.epoch_ratio == 16 / (
            8 if row.strategy == "halving" else 4
        )
        assert row.regret == pytest.approx(tests[best] - row.test_mean)


def test_a_selection_killed_between_rungs_continues_where_it_stopped(tmp_path):
    """SIGKILL of snakemake and its jobs once rung 0 is decided; after --unlock the rerun
    trains no rung-0 candidate again and rung 1 continues from rung 0's state."""
    grid = {**GRID, "softness": [0.0, 0.5, 1.0], "select": {"strategy": "halving"}}
    path = _reduced(tmp_path, [grid])
    config = yaml.safe_load(path.read_text())
    config["finetune"]["classification"]["recipe"]["epochs"] = 3  # rungs end at epochs 1, 3
    path.write_text(yaml.safe_dump(config))
    results = tmp_path / "results"
    target = results / SELECTIONS.format("halving") / "selection.json"
    args = [str(target), "--cores", "1", "--configfile", str(path)]
    decision = results / SELECTIONS.format("halving") / "rung~0.json"
    kill_when_exists(args, decision, "the first rung was decided")
    assert not target.exists()
    rung0 = {
        b: (_run(results, b) / "halving/rung~0/model.pt").stat().st_mtime_ns
        for b in (0.0, 0.5, 1.0)
    }
    snakemake("--unlock", "--configfile", str(path))
    snakemake(*args)
    after = {b: (_run(results, b) / "halving/rung~0/model.pt").stat().st_mtime_ns for b in rung0}
    assert after == rung0  # nothing of rung 0 was trained again
    (winner,) = json.loads(decision.read_text())["kept"]
    model = torch.load(_run(results, winner) / "halving/rung~1/model.pt", weights_only=True)
    assert [r["epoch"] for r in model["history"]] == [1, 2, 3]
    log = Path(ROOT / "logs/rung" / _run(results, winner).relative_to(results) / "rung~1.log")
    assert "continuing" in log.read_text() and "resuming after epoch 1" in log.read_text()
