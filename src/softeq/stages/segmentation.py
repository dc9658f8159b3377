"""Segmentation stages: a segmenter (spec: arch, image_size, kwargs, pretrained) on a VOC-format
dataset described by its manifest (root, protocol, num_classes)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from softeq.io import read_manifest
from softeq.soften_options import SoftenOptions, split_backbone_spec
from softeq.spec import Softening
from softeq.stages.common import (
    clear_output,
    load_softening,
    run_fingerprint,
    setup_device,
    soften_from,
    training_seed,
    training_splits,
    write_metrics,
    write_projectors,
)
from softeq.stages.rungs import best_epoch_file, check_rung_args, finish_rung, start_rung

__all__ = ["evaluate", "finetune", "pretrain", "projectors"]

SPEC_KEYS = {"arch", "image_size", "kwargs", "pretrained", "canonicalize"}


def _manifest(path: str) -> dict[str, Any]:
    return read_manifest(path, "voc")


def _segmenter(spec: dict[str, Any], num_classes: int, random_init: bool = False) -> nn.Module:
    from softeq.models.segmentation import build_segmenter

    spec, _ = split_backbone_spec(spec)  # the softening options act when softening
    unknown = set(spec) - SPEC_KEYS
    if unknown or "arch" not in spec or "image_size" not in spec:
        raise SystemExit(f"--backbone-spec: needs arch and image_size; unknown keys {unknown}")
    pretrained = None if random_init else spec.get("pretrained")
    return build_segmenter(
        spec["arch"],
        num_classes,
        spec["image_size"],
        pretrained,
        canonicalize=spec.get("canonicalize"),
        **spec.get("kwargs", {}),
    )


def _options(spec: dict[str, Any]) -> SoftenOptions:
    """The softening options of a backbone spec (its ``soften`` key)."""
    return split_backbone_spec(spec)[1]


def _split(manifest: dict, split: str, spec: dict, seed: int, train: bool):
    from softeq.data.voc import VOCSegmentation

    return VOCSegmentation(
        manifest["root"], split, spec["image_size"], manifest["protocol"], train=train, seed=seed
    )


def _train_and_save(
    args, model: nn.Module, manifest: dict, device: str, softening: Softening | None = None
) -> None:
    """Train (resuming --checkpoint when written for the same inputs), keep the best held-out
    epoch; the main process writes --out with the run's fingerprint."""
    from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
    from softeq.engine.distributed import Distributed
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.segmentation import SegRecipe, train_segmenter

    recipe = SegRecipe.from_dict(args.recipe, "--recipe")
    spec = args.backbone_spec
    fingerprint = run_fingerprint(args, recipe, softening)
    best = best_epoch_file(args.out)
    history = train_segmenter(
        model,
        _split(manifest, "train", spec, args.seed, True),
        recipe,
        args.seed,
        checkpoint=args.checkpoint,
        val_set=_split(manifest, "val", spec, args.seed, False),
        best_checkpoint=best,
        eval_spec=EvalSettings(sweep=()),
        device=device,
        desc=args.stage,
        fingerprint=fingerprint,
        until_epoch=getattr(args, "until_epoch", None),
    )
    if not Distributed.from_env(device).is_main:  # DDP: the main process writes --out
        return
    if best.exists():  # model selection on the held-out split (the paper's protocol)
        model.load_state_dict(load_checkpoint(best)["model"])
    save_checkpoint(
        {
            "model": model.state_dict(),
            "backbone": spec,
            "num_classes": manifest["num_classes"],
            "history": history,
            "fingerprint": fingerprint.to_dict(),
            **({} if softening is None else {"softening": softening.to_dict()}),
        },
        args.out,
    )
    finish_rung(args, device)


def pretrain(args: argparse.Namespace) -> None:
    """Train the plain segmenter that stands in for hub weights (the embedded default)."""
    clear_output(args.out, args.data)
    device = setup_device(args)
    manifest = _manifest(args.data)
    torch.manual_seed(args.seed)
    model = _segmenter(args.backbone_spec, manifest["num_classes"])
    _train_and_save(args, model, manifest, device)


def projectors(args: argparse.Namespace) -> None:
    """Build and save the segmenter's projectors (random weights: no download)."""
    setup_device(args)
    model = _segmenter(args.backbone_spec, 21, random_init=True)
    write_projectors(model, args.softening, args.out, _options(args.backbone_spec))


def finetune(args: argparse.Namespace) -> None:
    """Soften the (pre-trained) segmenter and fine-tune it; keep the best held-out epoch."""
    from softeq.engine.checkpoint import load_checkpoint

    clear_output(args.out, args.data, args.init, stale=args.invalidates)
    check_rung_args(args)
    training_splits(args, supported=False)
    device = setup_device(args)
    softening = args.softening
    manifest = _manifest(args.data)
    torch.manual_seed(args.seed)
    model = _segmenter(args.backbone_spec, manifest["num_classes"], args.init is not None)
    if args.init is not None:
        from softeq.models.canonicalize import init_target

        init = load_checkpoint(args.init)
        target = init_target(model, args.backbone_spec, init.get("backbone"))
        if target is None:
            raise SystemExit(f"{args.init}: trained with another model spec")
        target.load_state_dict(init["model"])
    soften_from(model, softening, args.projectors, _options(args.backbone_spec))
    start_rung(args, device)
    _train_and_save(args, model, manifest, device, softening)


def evaluate(args: argparse.Namespace) -> None:
    """mIoU, rotated mIoU, combined, per-pixel equivariance error and bounds, as JSON."""
    from softeq.engine.checkpoint import load_checkpoint
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.segmentation import evaluate_segmenter

    clear_output(args.out, args.data, args.model)
    device = setup_device(args)
    manifest = _manifest(args.data)
    state = load_checkpoint(args.model)
    softening = load_softening(state, args.model)
    model = _segmenter(state["backbone"], state["num_classes"], random_init=True)
    if softening is not None:
        soften_from(model, softening, args.projectors, _options(state["backbone"]))
    model.load_state_dict(state["model"])
    test_set = _split(manifest, args.split, state["backbone"], args.seed, False)
    spec = EvalSettings.from_dict(args.eval, "--eval")
    result = evaluate_segmenter(model, test_set, spec, args.seed, state["num_classes"], device)
    result.pop("per_class_iou", None)
    write_metrics(args, "segmentation", softening, result, model, device, training_seed(state))
