"""Classification stages: a timm backbone (spec: timm, input_size, kwargs, pretrained)."""

from __future__ import annotations

import argparse

import torch
from torch import nn

from softeq.models import build_classifier
from softeq.models.canonicalize import init_target
from softeq.soften_options import split_backbone_spec
from softeq.spec import Softening
from softeq.stages.common import (
    clear_output,
    load_softening,
    run_fingerprint,
    selected_epoch,
    setup_device,
    soften_from,
    training_seed,
    training_splits,
    write_metrics,
    write_projectors,
)
from softeq.stages.rungs import best_epoch_file, check_rung_args, finish_rung, start_rung

__all__ = ["evaluate", "finetune", "pretrain", "projectors"]


def _split(args, spec, split: str, train: bool, auto_augment: str | None = None):
    """``split`` of --data, resized and normalised as the backbone says (docs/conventions.md §1)."""
    from softeq.data.classification import load_classification

    if str(args.data).endswith(".safetensors") and spec.custom_input():
        raise SystemExit(
            f"{args.data}: the backbone's {', '.join(spec.custom_input())} apply to image files; "
            "the embedded tensors are stored normalised at their size (drop them)"
        )
    transform = spec.image_transform(train)
    return load_classification(args.data, split, spec.input_size, train, auto_augment, transform)


def _train_and_save(
    args,
    model: nn.Module,
    spec,
    recipe,
    num_classes: int,
    device: str,
    softening: Softening | None = None,
) -> None:
    """Train with the recipe (resuming from --checkpoint when it was written for the same
    inputs); the main process writes --out, with the run's fingerprint.  ``epochs: 0`` keeps
    the (softened) pre-trained weights as they are; ``select_epoch`` keeps the best epoch."""
    from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
    from softeq.engine.classification import train_classifier
    from softeq.engine.distributed import Distributed

    fingerprint = run_fingerprint(args, recipe, softening)
    history, ema, best = [], None, best_epoch_file(args.out)
    train, val = training_splits(args)
    if recipe.epochs:
        history, ema = train_classifier(
            model,
            _split(args, spec, train, True, recipe.auto_augment),
            recipe,
            args.seed,
            spec.input_size,
            args.checkpoint,
            device,
            desc=args.stage,
            num_classes=num_classes,
            fingerprint=fingerprint,
            val_set=_split(args, spec, val, False) if recipe.select_epoch else None,
            best_checkpoint=best if recipe.select_epoch else None,
            until_epoch=getattr(args, "until_epoch", None),
        )
    if not Distributed.from_env(device).is_main:
        return
    state = {
        "model": model.state_dict(),
        "backbone": args.backbone_spec,
        "num_classes": num_classes,
        "history": history,
        "fingerprint": fingerprint.to_dict(),
    }
    if softening is not None:
        state["softening"] = softening.to_dict()
    if recipe.select_epoch and best.exists():  # the best epoch's weights (the EMA's, if any)
        state["model"] = load_checkpoint(best)["model"]
    elif ema is not None:
        state["model_ema"] = ema.state_dict()
    save_checkpoint(state, args.out)
    finish_rung(args, device)


def pretrain(args: argparse.Namespace) -> None:
    """Train the plain model that stands in for hub weights (the embedded default)."""
    from softeq.data.classification import num_classes
    from softeq.engine.classification import Recipe

    clear_output(args.out, args.data)
    device = setup_device(args)
    recipe = Recipe.from_dict(args.recipe, "--recipe")
    if recipe.epochs == 0:
        raise SystemExit("--recipe: epochs 0 has nothing to pretrain")
    classes = num_classes(args.data)
    torch.manual_seed(args.seed)
    model_spec, _ = split_backbone_spec(args.backbone_spec)
    spec, model = build_classifier(model_spec, classes, drop_path=recipe.drop_path)
    _train_and_save(args, model, spec, recipe, classes, device)


def projectors(args: argparse.Namespace) -> None:
    """Build and save the backbone's projectors (random weights: no download)."""
    setup_device(args)
    model_spec, options = split_backbone_spec(args.backbone_spec)
    _, model = build_classifier(model_spec, 10, random_init=True)
    write_projectors(model, args.softening, args.out, options)


def finetune(args: argparse.Namespace) -> None:
    """Soften the (pre-trained) model and fine-tune it with the recipe."""
    from softeq.data.classification import num_classes
    from softeq.engine.checkpoint import load_checkpoint
    from softeq.engine.classification import Recipe

    clear_output(args.out, args.data, args.init, stale=args.invalidates)
    check_rung_args(args)
    device = setup_device(args)
    softening = args.softening
    recipe = Recipe.from_dict(args.recipe, "--recipe")
    classes = num_classes(args.data)
    torch.manual_seed(args.seed)
    model_spec, options = split_backbone_spec(args.backbone_spec)
    spec, model = build_classifier(
        model_spec, classes, args.init is not None, drop_path=recipe.drop_path
    )
    if args.init is not None:
        init = load_checkpoint(args.init)
        target = init_target(model, args.backbone_spec, init.get("backbone"))
        if target is None:
            raise SystemExit(f"{args.init}: trained with another backbone spec")
        target.load_state_dict(init.get("model_ema") or init["model"])
    soften_from(model, softening, args.projectors, options)
    start_rung(args, device)
    _train_and_save(args, model, spec, recipe, classes, device, softening)


def evaluate(args: argparse.Namespace) -> None:
    """Clean / rotated metrics, errors and bounds of a fine-tuned model, as JSON."""
    from softeq.engine.checkpoint import load_checkpoint
    from softeq.engine.classification import evaluate_classifier
    from softeq.engine.evaluation import EvalSettings

    clear_output(args.out, args.data, args.model)
    device = setup_device(args)
    state = load_checkpoint(args.model)
    softening = load_softening(state, args.model)
    model_spec, options = split_backbone_spec(state["backbone"], f"{args.model}: backbone")
    spec, model = build_classifier(model_spec, state["num_classes"], random_init=True)
    if softening is not None:
        soften_from(model, softening, args.projectors, options)
    model.load_state_dict(state.get("model_ema") or state["model"])  # the EMA when trained with one
    test_set = _split(args, spec, args.split, False)
    eval_spec = EvalSettings.from_dict(args.eval, "--eval")
    result = evaluate_classifier(model, test_set, eval_spec, args.seed, spec.input_size, device)
    selected = selected_epoch(state.get("history", []), "val_acc", lowest=False)
    if selected is not None:
        result["metrics"]["selected_epoch"] = selected
    write_metrics(args, "classification", softening, result, model, device, training_seed(state))
