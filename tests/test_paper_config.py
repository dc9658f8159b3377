"""config/paper.yaml, offline: the dry-run lists every job of PAPER.md's protocol."""

import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from dry_runs import count_jobs
from softeq.pipeline import resolve, validate_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dry_run(target: str, *extra: str) -> Counter:
    return count_jobs(target, "--configfile", "config/paper.yaml", *extra)


@pytest.fixture(scope="module")
def runs():
    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    return resolve(config)


def test_voc_lists_models_softness_and_seeds(runs):
    jobs = dry_run("all_voc")
    # 3 baselines (b = pos = 1) + ViT C720 (smooth and hard) + DINOv2 C720 + SegFormer C36
    # + the canonicalization baseline, 5 seeds each
    assert jobs["finetune"] == jobs["evaluate"] == 8 * 5
    voc = [r for r in runs if r.dataset == "voc"]
    assert {r.seed for r in voc} == {42, 420, 4200, 42000, 420000}
    settings = {(r.backbone, r.softening) for r in voc}
    assert {(b, s.group, s.softness, s.softness_pos) for b, s in settings if s.softness < 1} == {
        ("dinov2b14seg", "C720", 0.95, 1.0),
        ("segformerb0", "C36", 0.95, 0.95),
    }
    assert {r.softening.filter for r in voc} == {"rank-hard", "rank"}
    # the reference drops hard_mask for ViT: its reported row is the smooth mask; both run
    # (the Table 7 ablation)
    vit = {
        r.softening.filter for r in voc if r.softening.group == "C720" and r.backbone == "vitb16seg"
    }
    assert vit == {"rank", "rank-hard"}
    assert {r.softening.filter for r in voc if r.backbone != "vitb16seg"} == {"rank-hard"}
    assert {r.backbone for r in voc if r.softening.softness_pos == 1.0 == r.softening.softness} == {
        "vitb16segbase",
        "vitb16segcanon",
        "dinov2b14seg",
        "segformerb0",
    }


def test_ethucy_lists_five_scenes(runs):
    jobs = dry_run("all_ethucy")
    assert jobs["finetune"] == jobs["evaluate"] == 5 * (5 + 1 + 1)
    assert jobs["aggregate"] == 5
    scenes = {r.dataset for r in runs if r.task == "trajectory"}
    assert scenes == {f"ethucy-{s}" for s in ("eth", "hotel", "univ", "zara1", "zara2")}


def test_imagenet_lists_table_1(runs):
    jobs = dry_run("all_imagenet")
    assert jobs["finetune"] == jobs["evaluate"] == 9 + 3  # + the canonicalization baselines
    settings = {(r.backbone, r.softening) for r in runs if r.dataset == "imagenet"}
    soft = {
        (b, s.group, s.softness, s.softness_pos)
        for b, s in settings
        if (s.softness, s.softness_pos) != (1.0, 1.0)
    }
    assert soft == {
        ("vitb16", "C4", 0.9, 0.8),
        ("vitb16", "C72", 1.0, 0.8),
        ("dinov2b14", "C18", 0.8, 0.5),
        ("dinov2b14", "C72", 0.8, 1.0),
        ("resnet50", "C18", 0.95, 0.95),
        ("resnet50", "C72", 0.95, 0.95),
    }


def test_cifar_lists_the_reference_configs_runs(runs):
    jobs = dry_run("all_cifar100")
    # DeiT-S and DINOv2 strict at C4 and C18, ResNet-50 at b = 0 / 0.5 / 0.8 (C4) and 0.5 (C18),
    # each model plain (b = pos = 1), each behind a C4 and a C18 canonicalizer; one seed (42)
    assert jobs["finetune"] == jobs["evaluate"] == 11 + 6 and jobs["prepare_download"] == 1
    for dataset in ("cifar10", "cifar100"):
        cifar = [r for r in runs if r.dataset == dataset]
        assert {r.seed for r in cifar} == {42} and {r.softening.filter for r in cifar} == {"rank"}
        settings = {
            (r.backbone, r.softening.group, r.softening.softness, r.softening.softness_pos)
            for r in cifar
            if r.softening.softness < 1
        }
        assert settings == {
            ("deits16cifar", "C4", 0.0, 0.0),
            ("deits16cifar", "C18", 0.0, 0.0),
            ("dinov2b14cifar", "C4", 0.0, 0.0),
            ("dinov2b14cifar", "C18", 0.0, 0.0),
            ("resnet50cifar", "C4", 0.0, 0.0),
            ("resnet50cifar", "C4", 0.5, 0.5),
            ("resnet50cifar", "C4", 0.8, 0.8),
            ("resnet50cifar", "C18", 0.5, 0.5),
        }
        config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
        canonicalized = {r.backbone for r in cifar if "canon" in r.backbone}
        assert len(canonicalized) == 6 and all(
            r.softening.softness == 1 for r in cifar if "canon" in r.backbone
        )
        for backbone in canonicalized:  # e.g. vit_classif.yaml:127-201: [16, 16], b = 1
            spec = config["backbones"][backbone]
            assert spec["canonicalize"]["channels"] == [16, 16]
        assert {config["backbones"][b]["canonicalize"]["group"] for b in canonicalized} == {
            "C4",
            "C18",
        }


def test_cifar_recipes_follow_the_reference_configs():
    import json
    from types import SimpleNamespace

    from softeq.engine.classification import Recipe
    from softeq.pipeline.plan import Plan

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    # config/{vit,resnet,dino}_classif.yaml:45-51 / 35-41 / 38-44 and train/trainer.py:26-30:
    # AdamW, 30 epochs, cosine over 30 epochs stepped per epoch, weight decay 0, batch 128
    # (data: :16 / :16 / :12), plain cross-entropy, no clipping, float32
    lrs = {"deits16cifar": 1e-4, "resnet50cifar": 1e-4, "dinov2b14cifar": 5e-5}
    for backbone, lr in lrs.items():
        recipe = Recipe.from_dict(plan.recipe("finetune", "classification", backbone))
        assert (recipe.lr, recipe.epochs, recipe.batch_size, recipe.weight_decay) == (
            lr,
            30,
            128,
            0,
        )
        assert (recipe.schedule, recipe.warmup_epochs, recipe.min_lr) == ("epoch", 0, 0)
        assert recipe.label_smoothing == recipe.mixup == recipe.cutmix == recipe.reprob == 0
        assert recipe.auto_augment is None and recipe.ema_decay is None and not recipe.bf16
        assert recipe.grad_clip == 0 and recipe.grad_accum == 1 and recipe.select_epoch
        spec = json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))
        assert spec["input_size"] == 224 and spec["pretrained"] is True
        assert "mean" not in spec and "interpolation" not in spec  # ImageNet's, bilinear
    hubs = {
        "deits16cifar": "facebook/deit-small-patch16-224",
        "resnet50cifar": "microsoft/resnet-50",
        "dinov2b14cifar": "facebook/dinov2-base",
    }
    assert {b: config["backbones"][b]["hf"] for b in hubs} == hubs
    for dataset in ("cifar10", "cifar100"):  # data_loader/cifar.py:32-33, 68-72; main.py:108
        settings = config["datasets"][dataset]
        assert (settings["val_fraction"], settings["train_rotation"]) == (0.2, 10.0)


def test_everything_also_with_the_slurm_profile():
    plain = dry_run("all")
    slurm = dry_run("all", "--workflow-profile", "workflow/profiles/slurm")
    assert plain == slurm
    # ImageNet, VOC (ViT smooth and hard), ETH/UCY, the canonicalization baselines (Tables 1,
    # 2), CIFAR-10 / CIFAR-100, MNIST (Figure 2: 7 b x 2 methods x 3 seeds)
    assert plain["finetune"] == 9 + 35 + 35 + 3 + 5 + 22 + 12 + 42
    # the selections around the paper's b (docs/selection.md), five candidates each: halving's
    # first rung for ImageNet's ViT, VOC's two models and ETH/UCY's five scenes; zeroshot's
    # untrained candidates for ImageNet's three hub classifiers (later jobs follow the decisions)
    assert plain["rung"] == 5 * (1 + 2 + 5) and plain["rung_decision"] == 1 + 2 + 5
    assert plain["zeroshot_model"] == 5 * 3 and plain["zeroshot_choice"] == 3


def test_figure1_runs_the_papers_setting():
    # the paper's Figure 1: C4, the reference's rank rule, five levels from b = 0 to b = 1
    from types import SimpleNamespace

    from softeq.pipeline.plan import Plan

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    args = plan.figure1_args(SimpleNamespace(backbone="vitb16"), SimpleNamespace(model=[]))
    assert "--group C4 --filter rank --softness 0.0,0.25,0.5,0.75,1.0" in args


def test_the_training_recipes_follow_the_reference_scripts():
    from softeq.engine.classification import Recipe
    from softeq.engine.segmentation import SegRecipe
    from softeq.pipeline.plan import Plan

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    # reference scripts/run_imagenet.sh:12-19 pass --lr 0.00001 to every fine-tuning run
    for backbone in ("vitb16", "dinov2b14", "resnet50"):
        assert Recipe.from_dict(plan.recipe("finetune", "classification", backbone)).lr == 1e-5
    # config/segmentation.yaml:41, 104, 140 and train/seg_trainer.py:103-184: one weight decay
    # for all parameters, 0.01 SegFormer / DINOv2, 0.05 ViT
    # and 0.07 for the soft ViT rows (scripts/run_segmentation_pasvoc.sh:32-36)
    decay = {"segformerb0": 0.01, "dinov2b14seg": 0.01, "vitb16segbase": 0.05, "vitb16seg": 0.07}
    for backbone, value in decay.items():
        recipe = SegRecipe.from_dict(plan.recipe("finetune", "segmentation", backbone))
        assert recipe.weight_decay == value and recipe.decay_all


def test_the_classification_and_segmentation_protocol_reaches_the_jobs():
    """Each docs/fidelity.md option of Tables 1 and 2, through what the jobs receive."""
    import json
    from types import SimpleNamespace

    from softeq.engine.classification import Recipe
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.segmentation import SegRecipe
    from softeq.models.hf_classifier import HFBackboneSpec
    from softeq.pipeline.plan import Plan
    from softeq.soften_options import split_backbone_spec

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)

    def job_spec(backbone: str) -> dict:
        return json.loads(plan.backbone_spec(SimpleNamespace(backbone=backbone)))

    checkpoints = {
        "vitb16": "google/vit-base-patch16-224",
        "dinov2b14": "facebook/dinov2-base-imagenet1k-1-layer",
        "resnet50": "microsoft/resnet-50",
    }
    for backbone, hub in checkpoints.items():
        model_spec, options = split_backbone_spec(job_spec(backbone))
        spec = HFBackboneSpec.from_dict(model_spec)
        assert (spec.hf, spec.weights, spec.input_size) == (hub, hub, 224)
        assert options.basis == "schur"
        assert options.in_place == (backbone != "resnet50")  # ResNet has no positional grid
        recipe = Recipe.from_dict(plan.recipe("finetune", "classification", backbone))
        # layer decay and drop path do not reach the reference's transformers models
        assert recipe.layer_decay is None and recipe.drop_path == 0.0
        assert recipe.select_epoch and recipe.ema_decay == 0.9999 and recipe.epochs == 15
        assert recipe.schedule == "epoch"  # timm's scheduler, stepped once an epoch
        assert (recipe.warmup_epochs, recipe.warmup_lr) == (
            (5, 1e-5) if backbone == "resnet50" else (4, 1e-6)
        )
        base = Recipe.from_dict(plan.recipe("finetune", "classification", f"{backbone}base"))
        assert base.epochs == 0  # the reference evaluates its baselines as they are
        base_spec = HFBackboneSpec.from_dict(split_backbone_spec(job_spec(f"{backbone}base"))[0])
        assert base_spec.normalization() == spec.normalization()
        # timm's transforms as the reference resolves them: bicubic, random training crops
        assert spec.image_transform(train=False)["interpolation"] == "bicubic"
        assert spec.image_transform(train=True)["interpolation"] == "random"
        assert base_spec.image_transform(train=False) == spec.image_transform(train=False)
    half = ((0.5,) * 3, (0.5,) * 3)
    assert HFBackboneSpec.from_dict(split_backbone_spec(job_spec("vitb16"))[0]).normalization() == (
        half
    )
    resnet = Recipe.from_dict(plan.recipe("finetune", "classification", "resnet50"))
    assert (resnet.mixup, resnet.cutmix, resnet.reprob, resnet.auto_augment) == (0, 0, 0, None)
    assert resnet.warmup_epochs == 5
    evaluation = EvalSettings.from_dict(
        json.loads(plan.eval_settings(SimpleNamespace(task="classification", backbone="vitb16")))
    )
    assert evaluation.batch_size == 128  # combined_batches in the reference's batches
    assert evaluation.damp_border  # torchvision's rotation with fill 0, as the reference
    evaluation = EvalSettings.from_dict(
        json.loads(plan.eval_settings(SimpleNamespace(task="segmentation", backbone="vitb16seg")))
    )
    assert evaluation.batch_size == 32 and evaluation.damp_border  # eq_error_reference
    for backbone in ("vitb16seg", "dinov2b14seg", "segformerb0"):
        assert not SegRecipe.from_dict(plan.recipe("finetune", "segmentation", backbone)).amp
    dinov2 = job_spec("dinov2b14seg")
    assert dinov2["image_size"] == 512 and dinov2["kwargs"]["crop_remainder"]
    assert (dinov2["arch"], dinov2["pretrained"]) == ("dinov2_hf", "facebook/dinov2-base")
    options = split_backbone_spec(dinov2)[1]
    assert options.basis is None and options.in_place  # the reference's svd there; in place
    vit = job_spec("vitb16seg")
    assert (vit["arch"], vit["pretrained"]) == ("vit_hf", "google/vit-base-patch16-224")
    options = split_backbone_spec(vit)[1]
    assert options.basis == "schur" and options.in_place
    assert {"vitb16timm", "resnet50timm"} == set(config["figure1"]["backbones"])
