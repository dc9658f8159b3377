"""The learned-canonicalization baseline (softeq.models.canonicalize): exact C4 invariance of a
canonicalized classifier and equivariance of a canonicalized segmenter under 90-degree
rotations, the reference's prior, the options' errors, and a fine-tune / evaluation of the
embedded digits through the CLI."""

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("equiadapt")
pytest.importorskip("e2cnn")

import softeq
from softeq.data.embedded import build_digits
from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
from softeq.engine.classification import Recipe, build_optimizer
from softeq.engine.loop import auxiliary_loss
from softeq.engine.segmentation import SegRecipe, param_groups
from softeq.models import BackboneSpec, build_classifier
from softeq.models.canonicalize import (
    Canonicalize,
    CanonicalizedClassifier,
    CanonicalizedSegmenter,
    init_target,
)
from softeq.models.hf_classifier import HFBackboneSpec
from softeq.models.segmentation import build_segmenter

PLAIN = {
    "timm": "vit_tiny_patch16_224",
    "input_size": 32,
    "kwargs": {"img_size": 32, "patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2},
}
CANON = {**PLAIN, "canonicalize": {"group": "C4", "channels": [4, 4]}}


def _classifier(spec=CANON, seed: int = 0) -> CanonicalizedClassifier:
    torch.manual_seed(seed)
    return build_classifier(spec, 10)[1].eval()


def _no_ties(scores: torch.Tensor) -> None:
    top = scores.topk(2, dim=-1).values
    assert (top[:, 0] - top[:, 1]).min() > 1e-4, "argmax ties: pick another seed"


def test_spec_parses_with_the_reference_defaults():
    spec = Canonicalize.from_dict({"group": "C18"})
    assert (spec.order, spec.channels, spec.kernel_sizes) == (18, (8, 8), (7, 3, 3))
    assert (spec.prior_weight, spec.padding) == (0.001, "zeros")
    assert BackboneSpec.from_dict(CANON).canonicalize.order == 4
    assert BackboneSpec.from_dict(PLAIN).canonicalize is None


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"group": "D4"}, "canonicalize.group"),
        ({"channels": [8]}, "canonicalize.group"),
        ({"group": "C4", "channels": []}, "canonicalize.channels"),
        ({"group": "C4", "channels": [8, 0]}, "canonicalize.channels"),
        ({"group": "C4", "kernel_sizes": [7, 4, 3]}, "canonicalize.kernel_sizes"),
        ({"group": "C4", "kernel_sizes": [7, 3]}, "canonicalize.kernel_sizes"),
        ({"group": "C4", "prior_weight": -1}, "canonicalize.prior_weight"),
        ({"group": "C4", "padding": "reflect"}, "canonicalize.padding"),
        ({"group": "C4", "mid_channels": [8]}, "canonicalize: unknown keys"),
        ([8, 8], "canonicalize: expected a mapping"),
    ],
)
def test_bad_options_raise_naming_the_key(values, key):
    with pytest.raises(ValueError, match=f"backbone.{key}"):
        BackboneSpec.from_dict({**PLAIN, "canonicalize": values})
    hf = {"hf": "vit", "input_size": 32, "canonicalize": values}
    with pytest.raises(ValueError, match=f"backbone.{key}"):
        HFBackboneSpec.from_dict(hf)
    with pytest.raises(ValueError, match=key.split(":")[0]):
        build_segmenter("vit", 3, 32, canonicalize=values)


def test_c4_classifier_is_invariant_to_90_degree_rotations():
    model = _classifier()
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = model.fibre_features(x)
        _no_ties(scores)
        logits = model(x)
        angles = model.angles().clone()
        for k in (1, 2, 3):
            turned = torch.rot90(x, k, (-2, -1))
            # the scores of the rotated image are the scores shifted cyclically by k
            torch.testing.assert_close(model.fibre_features(turned), scores.roll(k, -1))
            torch.testing.assert_close(model(turned), logits, atol=1e-4, rtol=0)
            assert torch.equal(model.angles(), (angles + 90 * k) % 360)
    plain = build_classifier(PLAIN, 10)[1].eval()
    with torch.no_grad():  # the backbone alone is not invariant: the test can fail
        assert (plain(torch.rot90(x, 1, (-2, -1))) - plain(x)).abs().max() > 1e-3


def test_softened_backbone_inside_stays_invariant_and_the_canonicalizer_is_not_softened():
    model = softeq.soften(_classifier(), "C4", 0.5)
    soft = [name for name, _ in model.named_parameters() if "original" in name]
    assert soft and all(name.startswith("model.") for name in soft)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _no_ties(model.fibre_features(x))
        torch.testing.assert_close(model(torch.rot90(x, 1, (-2, -1))), model(x), atol=1e-4, rtol=0)


def test_hf_classifier_is_canonicalized_too():
    pytest.importorskip("transformers")
    spec = {
        "hf": "vit",
        "input_size": 32,
        "kwargs": {
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "canonicalize": {"group": "C4", "channels": [4]},
    }
    model = _classifier(spec)
    assert model.reference_in_place == ("model.model.vit.embeddings.position_embeddings",)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _no_ties(model.fibre_features(x))
        torch.testing.assert_close(model(torch.rot90(x, 3, (-2, -1))), model(x), atol=1e-4, rtol=0)


def test_prior_is_the_weighted_cross_entropy_to_the_identity():
    model = _classifier().train()
    assert model.auxiliary_loss() is None  # before any forward
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    model(x)
    with torch.no_grad():
        scores = model.fibre_features(x)
    by_hand = 0.001 * -F.log_softmax(scores, dim=-1)[:, 0].mean()
    torch.testing.assert_close(model.auxiliary_loss().detach(), by_hand)
    torch.testing.assert_close(auxiliary_loss(model).detach(), by_hand)  # what the loop adds
    model.auxiliary_loss().backward()  # the prior trains the canonicalizer
    assert all(p.grad is not None for p in model.canonicalizer.parameters())
    copy.deepcopy(model)  # copies (EMA) after a forward: no graph is carried along
    off = _classifier({**PLAIN, "canonicalize": {"group": "C4", "prior_weight": 0}})
    off(x)
    assert off.auxiliary_loss() is None


def test_state_dict_is_the_same_in_train_and_eval_mode():
    model = _classifier()
    keys = list(model.train().state_dict())
    assert list(model.eval().state_dict()) == keys
    again = _classifier(seed=5)
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_canonicalizer_parameters_are_trained_with_the_model():
    model = _classifier()
    optimizer = build_optimizer(model, Recipe())
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in held for p in model.canonicalizer.parameters())
    torch.manual_seed(0)
    segmenter = build_segmenter(
        "vit",
        3,
        32,
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"depth": 1, "patch_size": 8, "embed_dim": 24, "num_heads": 2},
        canonicalize={"group": "C4", "channels": [4]},
    )
    groups = {g["name"]: g for g in param_groups(segmenter, SegRecipe())}
    head = {id(p) for p in groups["head"]["params"]}
    assert all(id(p) in head for p in segmenter.canonicalizer.parameters())
    assert all(id(p) in head for p in segmenter.model.head.parameters())
    assert groups["head"]["lr"] == SegRecipe().head_lr


def test_segmenter_rotates_its_prediction_back():
    torch.manual_seed(0)
    model = build_segmenter(
        "vit",
        5,
        32,
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"depth": 1, "patch_size": 8, "embed_dim": 24, "num_heads": 2},
        canonicalize={"group": "C4", "channels": [4, 4]},
    ).eval()
    assert isinstance(model, CanonicalizedSegmenter) and model.num_classes == 5
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _no_ties(model.fibre_features(x))
        logits = model(x)
        assert logits.shape == (3, 5, 32, 32)
        for k in (1, 2, 3):
            turned = model(torch.rot90(x, k, (-2, -1)))
            torch.testing.assert_close(turned, torch.rot90(logits, k, (-2, -1)), atol=1e-4, rtol=0)


def test_init_target_loads_a_plain_backbone_into_the_wrapper():
    model = _classifier()
    assert init_target(model, CANON, CANON) is model
    assert init_target(model, CANON, PLAIN) is model.model
    assert init_target(model, CANON, {**PLAIN, "input_size": 64}) is None


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return build_digits(tmp_path_factory.mktemp("data") / "digits.safetensors")


def _softeq(*args: str) -> None:
    cmd = [sys.executable, "-m", "softeq.cli", *args, "--threads", "1"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()


def test_finetune_and_evaluate_on_the_digits(digits, tmp_path):
    torch.manual_seed(0)
    plain = build_classifier(PLAIN, 10)[1]
    init = tmp_path / "pretrained.pt"
    save_checkpoint({"model": plain.state_dict(), "backbone": PLAIN, "num_classes": 10}, init)
    out = tmp_path / "canon.pt"
    softening = {"group": "C4", "softness": 1.0, "softness_pos": 1.0, "filter": "shrink"}
    recipe = {"epochs": 1, "batch_size": 128, "lr": 1e-5, "warmup_epochs": 0.5}
    _softeq(
        "finetune", "--data", str(digits), "--backbone-spec", json.dumps(CANON),
        "--softening", json.dumps(softening), "--recipe", json.dumps(recipe),
        "--init", str(init), "--seed", "3", "--out", str(out),
    )  # fmt: skip
    state = load_checkpoint(out)
    assert any(k.startswith("canonicalizer.") for k in state["model"])
    assert state["history"][-1]["auxiliary"] > 0  # the prior entered the loss
    name = "blocks.0.attn.qkv.weight"  # the backbone started from --init (a few small steps)
    assert (state["model"][f"model.{name}"] - plain.state_dict()[name]).abs().max() < 1e-3
    metrics_file = tmp_path / "canon.json"
    _softeq(
        "evaluate", "--data", str(digits), "--model", str(out), "--dataset", "digits",
        "--backbone", "vitcanon", "--eval", json.dumps({"sweep": [0, 90]}),
        "--out", str(metrics_file),
    )  # fmt: skip
    result = json.loads(metrics_file.read_text())
    metrics = result["metrics"]
    assert {"acc", "rot_acc", "combined", "inv_error", "inv_error_rot90"} <= set(metrics)
    assert metrics["inv_error_rot90"] < 1e-6  # C4-invariant up to the rotation's rounding
    assert [row["angle"] for row in result["angle_sweep"]] == [0, 90]


def _plan(name: str):
    from pathlib import Path

    import yaml

    from softeq.pipeline import validate_config
    from softeq.pipeline.plan import Plan

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / f"config/{name}").read_text())
    validate_config(config, root / "workflow/schemas/config.schema.yaml")
    return Plan(config)


def test_paper_and_embedded_configs_reach_the_jobs():
    from types import SimpleNamespace

    plan = _plan("paper.yaml")
    for backbone, channels in (("vitb16canon", (8, 8)), ("resnet50canon", (16, 16))):
        spec = json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))
        spec = {k: v for k, v in spec.items() if k != "soften"}  # the stages split it off
        canon = HFBackboneSpec.from_dict(spec).canonicalize
        assert (canon.group, canon.channels, canon.prior_weight) == ("C18", channels, 0.0)
        recipe = Recipe.from_dict(plan.recipe("finetune", "classification", backbone))
        assert recipe.ema_decay is None and recipe.lr == 1e-5  # model_ema false, --lr 1e-5
    spec = json.loads(plan.backbone_spec(SimpleNamespace(backbone="vitb16segcanon")))
    canon = Canonicalize.from_dict(spec["canonicalize"])
    assert (canon.group, canon.channels, canon.prior_weight) == ("C18", (16, 16), 0.0)
    recipe = SegRecipe.from_dict(plan.recipe("finetune", "segmentation", "vitb16segcanon"))
    assert (recipe.batch_size, recipe.head_lr, recipe.backbone_lr) == (16, 1e-3, 5e-5)
    assert recipe.weight_decay == 0.05
    embedded = _plan("config.yaml")
    assert embedded.pretrain_backbone("vitcanon") == "vit"  # the canonicalizer starts fresh
    assert embedded.pretrain_backbone("vit") == "vit"
    runs = [r for r in embedded.runs if r.backbone == "vitcanon"]
    assert [(r.softening.group, r.softening.softness) for r in runs] == [("C4", 1.0)]
