"""config/paper.yaml's trajectory protocol as its jobs receive it (docs/fidelity.md): the
reference's window rule and each backbone's observation / prediction lengths.

Everything goes through what a job gets: the prepare job's ``--protocol`` JSON
(``Plan.prepare_protocol``), the manifest ``prepare-data`` writes from it, the ``--backbone-spec``
JSON (``Plan.backbone_spec``), and the trajectory stage that builds the model and its dataset from
them (``softeq.stages.trajectory``).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from softeq.data.listing import write_checksums
from softeq.pipeline import validate_config
from softeq.pipeline.plan import Plan
from softeq.stages import trajectory as stage
from softeq.stages.data import trajectory_manifest

ROOT = Path(__file__).resolve().parents[1]

# The reference (ashiq24/soft-equivariance at 7f5a9e9), config/trajectory.yaml: the filtered
# config observes 10 and predicts 10 steps (lines 68-69, 80-81), the non-equivariant one 8 / 12
# (lines 16-17, 28-29).  The constant-velocity baseline is not in the reference: it keeps the
# dataset's standard 8 / 12.
EXPECTED_LENGTHS = {"transformer": (10, 10), "transformerbase": (8, 12), "constvel": (8, 12)}


@pytest.fixture(scope="module")
def plan() -> Plan:
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    return Plan(config)


def protocol_of(plan: Plan) -> dict:
    """The ``--protocol`` JSON of the ETH/UCY prepare job."""
    return json.loads(plan.prepare_protocol(SimpleNamespace(family="ethucy")))


def job_model(plan: Plan, backbone: str, manifest: dict):
    """The model a trajectory job builds from its ``--backbone-spec`` and the dataset manifest."""
    spec = json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))
    if spec["preset"].startswith("reference-"):  # a scene model: its width, without the data
        spec["kwargs"] = {**spec.get("kwargs", {}), "max_agents": 4}
    return stage.job_model(spec, manifest)


def test_every_paper_trajectory_backbone_is_checked(plan):
    used = {run.backbone for run in plan.runs if run.task == "trajectory"}
    assert used == set(EXPECTED_LENGTHS)


@pytest.mark.parametrize("backbone", sorted(EXPECTED_LENGTHS))
def test_each_backbone_gets_the_reference_lengths(plan, backbone):
    model = job_model(plan, backbone, protocol_of(plan))
    assert (model.obs_len, model.pred_len) == EXPECTED_LENGTHS[backbone]


def test_the_window_rule_is_the_references(plan):
    # reference data_loader/padded_human_trajectory.py:59: kept when agents > min_ped = 1
    assert protocol_of(plan)["min_agents"] == 2


def write_scene(root: Path, seq_len: int) -> Path:
    """One test file: agents 1 and 2 together for one window, then agent 1 alone for seq_len
    more frames (windows with a single agent)."""
    rows = [(f * 10, 1, 0.1 * f, 0.0) for f in range(2 * seq_len)]
    rows += [(f * 10, 2, 0.0, 0.1 * f) for f in range(seq_len)]
    folder = root / "eth" / "test"
    folder.mkdir(parents=True)
    text = "".join(f"{f}\t{p}\t{x:.2f}\t{y:.2f}\n" for f, p, x, y in sorted(rows))
    (folder / "scene.txt").write_text(text)
    return write_checksums(root, ["eth/test/scene.txt"], root / "SHA256SUMS")


@pytest.mark.parametrize("backbone", ["transformer", "transformerbase"])
def test_a_job_keeps_only_windows_of_two_agents_or_more(plan, backbone, tmp_path):
    protocol = protocol_of(plan)
    lengths = EXPECTED_LENGTHS[backbone]
    root = tmp_path / "ethucy"
    sums = write_scene(root, sum(lengths))
    out = tmp_path / "ethucy.json"
    trajectory_manifest(root, sums, out, protocol)  # what prepare-data writes
    manifest = json.loads(out.read_text())
    model = job_model(plan, backbone, manifest)
    data = stage.job_split(manifest, "eth", "test", model)
    # one window with both agents; the seq_len windows of agent 1 alone are dropped
    assert len(data) == 1 and data.num_agents == 2
    obs, fut = data[0]
    assert obs.shape == (2, lengths[0], 2) and fut.shape == (2, lengths[1], 2)


def first_run(plan: Plan, backbone: str):
    """The first paper.yaml trajectory run of ``backbone``."""
    return next(r for r in plan.runs if r.task == "trajectory" and r.backbone == backbone)


def test_the_filtered_rows_run_the_references_model_and_filter(plan):
    # reference models/filtered_autoreg_transformer.py:246-386: filters applied in place at
    # each forward (attention projections and biases, linear biases, positional encoding),
    # config/trajectory.yaml:62-69: hard invariant filter; models/autoregressive_transformer.py
    # :147-177: teacher forcing feeds [obs, gt] and reads positions obs_len...
    run = first_run(plan, "transformer")
    spec = json.loads(plan.backbone_spec(run.wildcards()))
    model = job_model(plan, "transformer", protocol_of(plan))
    assert type(model).__name__ == "SceneTransformer"
    assert model.config.teacher_forcing == "leak" and not model.config.pair_dropout
    assert (model.config.d_model, model.config.layers, model.config.heads) == (128, 4, 4)
    assert (model.config.ffn, model.config.dropout) == (512, 0.1)
    assert run.softening.filter == "shrink"  # W_b = P W + b (I - P) W: the block interpolation
    stage._soften_or_check(model, spec, run.softening, None)
    hooked = {name for name, m in model.named_modules() if m._forward_pre_hooks}
    assert {"", "embed", "head", "blocks.0", "blocks.0.attn.q", "blocks.0.ffn.0"} <= hooked
    soft = {s.name: s.parametrization.projector.key.filter for s in stage_soft(model)}
    assert soft == {name: "shrink" for name in soft}  # the weights outside attention
    assert "blocks.0.ffn.0.weight" in soft and "blocks.0.attn.q.weight" not in soft


def stage_soft(model):
    from softeq.layers import iter_soft

    return list(iter_soft(model))


def test_the_recipe_and_evaluation_follow_the_reference(plan):
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.trajectory import TrajectoryRecipe

    # train/traj_trainer.py:47 Adam; :230-247, 298-299 CosineAnnealingLR per epoch to 1e-6;
    # :93 MSE over valid coordinates; :293-295 best epoch by validation ADE; no clipping
    recipe = TrajectoryRecipe.from_dict(plan.recipe("finetune", "trajectory", "transformer"))
    assert (recipe.schedule, recipe.loss_per, recipe.select_epoch) == ("epoch", "coordinate", True)
    assert (recipe.lr, recipe.min_lr, recipe.grad_clip, recipe.rotate_degrees) == (
        5e-4,
        1e-6,
        0,
        30,
    )
    base = TrajectoryRecipe.from_dict(plan.recipe("finetune", "trajectory", "transformerbase"))
    assert base.rotate_degrees == 45  # config/trajectory.yaml:22-24
    settings = {
        b: EvalSettings.from_dict(json.loads(plan.eval_settings(first_run(plan, b).wildcards())))
        for b in ("transformer", "transformerbase")
    }
    assert settings["transformer"].eval_rot == 30 and settings["transformerbase"].eval_rot == 45
    assert settings["transformer"].batch_size == 128  # the reference's per-batch eq. error
