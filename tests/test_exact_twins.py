"""The ``exact_twins`` switch of config/paper.yaml: every backbone with an ``exact`` block also
runs as ``<name>exact``, softeq's exact method beside the reference's behaviours
(docs/fidelity.md), as the jobs receive it."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from softeq.pipeline import validate_config
from softeq.pipeline.config import ConfigError
from softeq.pipeline.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def paper() -> dict:
    return yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def plan_of(config: dict) -> Plan:
    config = copy.deepcopy(config)
    validate_config(config, SCHEMA)
    return Plan(config)


def spec(plan: Plan, backbone: str) -> dict:
    return json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))


def test_the_switch_is_off_by_default_and_adds_twins_beside_every_row(paper):
    plain = plan_of(paper)
    twins = plan_of({**paper, "exact_twins": True})
    assert not any(run.backbone.endswith("exact") for run in plain.runs)
    names = {run.backbone for run in twins.runs}
    assert {
        "transformerexact",
        "transformerbaseexact",
        "resnet50exact",
        "segformerb0exact",
    } <= names
    reference = {
        (r.dataset, r.softening.path, r.seed) for r in twins.runs if r.backbone == "resnet50"
    }
    exact = {
        (r.dataset, r.softening.path, r.seed) for r in twins.runs if r.backbone == "resnet50exact"
    }
    assert reference == exact  # the same grid, run both ways
    with_exact = {name for name, spec in paper["backbones"].items() if "exact" in spec}
    assert {"transformer", "vitb16", "dinov2b14", "dinov2b14seg"} <= with_exact
    assert len(twins.runs) == len(plain.runs) + sum(
        1 for r in plain.runs if r.backbone in with_exact
    )


def test_a_twin_drops_the_references_behaviours(paper):
    plan = plan_of({**paper, "exact_twins": True})
    reference, exact = spec(plan, "transformer"), spec(plan, "transformerexact")
    assert reference["soften"] == {"vector_filter": "decay", "in_place": True}
    assert "soften" not in exact and "exact" not in exact and "exact" not in reference
    assert exact["kwargs"]["teacher_forcing"] == "shifted" and exact["kwargs"]["pair_dropout"]
    assert exact["kwargs"]["obs_len"] == 10  # everything else as the reference's row
    assert "soften" not in spec(plan, "resnet50exact")
    assert spec(plan, "resnet50exact")["pretrained"] == spec(plan, "resnet50")["pretrained"]
    assert spec(plan, "resnet50exact")["input_size"] == 225  # odd at every stride: exact C_4
    assert spec(plan, "vitb16")["soften"] == {"basis": "schur", "in_place": True}
    assert "soften" not in spec(plan, "vitb16exact")


def test_the_switch_without_any_exact_block_is_an_error(paper):
    config = copy.deepcopy(paper)
    for backbone in config["backbones"].values():
        backbone.pop("exact", None)
    with pytest.raises(ConfigError, match="no backbone has an `exact` block"):
        plan_of({**config, "exact_twins": True})
