"""Segmentation: fine-tuning with head / backbone learning rates, checkpoint/resume, evaluation.

The recipe follows the paper (PAPER.md, PASCAL VOC): AdamW with three parameter groups (the
head at ``head_lr``; the backbone at ``backbone_lr``, split into weights with weight decay and
norms / biases / positional embeddings / special tokens without), ``warmup_iters`` of linear
warmup then a per-iteration cosine to ``min_lr_ratio`` times each group's rate, gradient
clipping, cross-entropy with 255 ignored.

Training is resumable and reproducible as in :mod:`softeq.engine.classification`: the
checkpoint written atomically after each epoch holds model, optimizer, scheduler, history and the
best selection score; the data order, the augmentation of every sample (``set_epoch`` on the
dataset) and dropout of epoch e all derive from (seed, e), so a killed and resumed run ends with
the same weights as one that was not. With a ``val_set`` (the held-out selection split) every
epoch is scored on ``select_metric`` and the best weights are written to ``best_checkpoint``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.engine.checkpoint import save_checkpoint
from softeq.engine.schedule import epoch_seed as epoch_seed_of
from softeq.engine.schedule import epochs_to_run, resume, save_state, warmup_cosine
from softeq.metrics.segmentation import IGNORE_INDEX, SegmentationMeter
from softeq.settings import from_dict
from softeq.transforms import rotate_images, sample_angles

__all__ = [
    "SegEvalSpec",
    "SegRecipe",
    "evaluate_segmenter",
    "param_groups",
    "train_segmenter",
]

_SELECT = ("miou", "rot_miou", "combined", "pixel_acc")
_NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "dist_token", "mask_token", "pos_block")


@dataclass(frozen=True)
class SegRecipe:
    """Fine-tuning hyper-parameters (config: ``finetune`` for segmentation)."""

    epochs: int = 100
    batch_size: int = 32
    head_lr: float = 1e-3
    backbone_lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_iters: int = 250
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    select_metric: str = "miou"
    amp: bool = False  # bf16 autocast (CUDA only)
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.select_metric not in _SELECT:
            raise ValueError(f"select_metric must be one of {_SELECT}, got {self.select_metric!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1: {self}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> SegRecipe:
        return from_dict(cls, values, where)


@dataclass(frozen=True)
class SegEvalSpec:
    """Evaluation settings (config: ``evaluate`` for segmentation)."""

    eval_rot: float = 30.0  # rotated evaluation: angles uniform in [-eval_rot, +eval_rot] degrees
    sweep: tuple[float, ...] = (-90, -45, -30, -15, 0, 15, 30, 45, 90)
    batch_size: int = 16

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "evaluate") -> SegEvalSpec:
        return from_dict(cls, values, where, tuples=("sweep",))


def _is_head(model: nn.Module, name: str) -> bool:
    is_head = getattr(model, "is_head", None)
    if is_head is not None:
        return bool(is_head(name))
    return name.startswith(("head.", "decode_head."))


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or any(token in name for token in _NO_DECAY_NAMES)


def param_groups(model: nn.Module, recipe: SegRecipe) -> list[dict[str, Any]]:
    """The three AdamW groups: head; backbone with decay; backbone without (norms, biases,
    positional embeddings, tokens). Head parameters are those ``model.is_head`` names.
    Empty groups are dropped."""
    head, decay, no_decay = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if _is_head(model, name):
            head.append(param)
        elif _no_decay(name, param):
            no_decay.append(param)
        else:
            decay.append(param)
    if not head:
        raise ValueError(f"{type(model).__name__}: no head parameters found (is_head)")
    groups = [
        {"name": "head", "params": head, "lr": recipe.head_lr, "weight_decay": recipe.weight_decay},
        {
            "name": "backbone",
            "params": decay,
            "lr": recipe.backbone_lr,
            "weight_decay": recipe.weight_decay,
        },
        {
            "name": "backbone_no_decay",
            "params": no_decay,
            "lr": recipe.backbone_lr,
            "weight_decay": 0.0,
        },
    ]
    return [g for g in groups if g["params"]]


def _autocast(recipe: SegRecipe, device: str):
    if recipe.amp and str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_segmenter(
    model: nn.Module,
    train_set: Dataset,
    recipe: SegRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    val_set: Dataset | None = None,
    best_checkpoint: str | Path | None = None,
    eval_spec: SegEvalSpec | None = None,
    device: str = "cpu",
    desc: str = "train",
    stop_after_epochs: int | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.

    Returns the history (one record per epoch: loss, train pixel accuracy, learning rates, and
    ``val_<metric>`` when ``val_set`` is given). The model ends with the last epoch's weights;
    the best epoch's (by ``recipe.select_metric`` on ``val_set``) are in ``best_checkpoint``
    (``{"model", "epoch", "score", "metric"}``). ``stop_after_epochs`` ends the call early, as if
    killed, for tests of resume.
    """
    model.to(device)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    optimizer = torch.optim.AdamW(param_groups(model, recipe))
    schedule = warmup_cosine(
        recipe.warmup_iters, recipe.epochs * steps_per_epoch, recipe.min_lr_ratio
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history, start, state = resume(checkpoint, recipe, seed, model, optimizer, scheduler)
    best = float(state["best"]) if state else -math.inf
    spec = SegEvalSpec(sweep=()) if eval_spec is None else eval_spec
    for epoch in epochs_to_run(recipe.epochs, start, stop_after_epochs):
        record = _train_epoch(
            model, train_set, recipe, seed, epoch, optimizer, scheduler, device, desc
        )
        if val_set is not None:
            rotated = recipe.select_metric in ("rot_miou", "combined")
            scores = evaluate_segmenter(
                model,
                val_set,
                SegEvalSpec(spec.eval_rot, (), spec.batch_size),
                seed,
                device=device,
                desc=f"{desc} select",
                rotated=rotated,
            )["metrics"]
            record.update({f"val_{k}": v for k, v in scores.items()})
            score = scores[recipe.select_metric]
            if score > best:
                best = score
                if best_checkpoint is not None:
                    save_checkpoint(
                        {
                            "model": model.state_dict(),
                            "epoch": epoch,
                            "score": score,
                            "metric": recipe.select_metric,
                        },
                        best_checkpoint,
                    )
        history.append(record)
        save_state(checkpoint, recipe, seed, epoch, history, model, optimizer, scheduler, best=best)
    return history


def _train_epoch(
    model, train_set, recipe, seed, epoch, optimizer, scheduler, device, desc
) -> dict[str, float]:
    model.train()
    epoch_seed = epoch_seed_of(seed, epoch)
    torch.manual_seed(epoch_seed)  # dropout / drop-path draws: reproducible per epoch on resume
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    order = torch.Generator().manual_seed(epoch_seed)
    loader = DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        shuffle=True,
        generator=order,
        num_workers=recipe.num_workers,
        pin_memory=str(device).startswith("cuda"),
    )
    total_loss, correct, labelled, batches = 0.0, 0, 0, 0
    bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}", leave=False)
    for images, masks in bar:
        images = images.to(device, non_blocking=True)
        masks = masks.to(device, non_blocking=True)
        with _autocast(recipe, device):
            logits = model(images)
        logits = logits.float()
        valid = masks != IGNORE_INDEX
        count = valid.sum()
        loss = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX, reduction="sum")
        loss = loss / count.clamp_min(1)  # a batch of void pixels only gives 0, not NaN
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            correct += int(((logits.argmax(1) == masks) & valid).sum())
            labelled += int(count)
        total_loss += float(loss.detach())
        batches += 1
        bar.set_postfix(loss=f"{total_loss / batches:.3f}")
    lrs = {f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}
    return {
        "epoch": epoch + 1,
        "loss": total_loss / max(batches, 1),
        "train_pixel_acc": correct / max(labelled, 1),
        **lrs,
    }


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module,
    test_set: Dataset,
    spec: SegEvalSpec,
    seed: int,
    num_classes: int | None = None,
    device: str = "cpu",
    desc: str = "evaluate",
    rotated: bool = True,
) -> dict[str, Any]:
    """Clean / rotated mIoU, combined score, equivariance error, pixel accuracy (DESIGN 4), and
    the equivariance error and mIoU against a fixed sweep of angles.

    Every sample i is rotated by ``sample_angles(len(test_set), spec.eval_rot, seed)[i]``
    (images bilinear with fill 0, masks nearest with fill 255). Returns ``{"metrics": {miou,
    rot_miou, combined, eq_error, pixel_acc, rot_pixel_acc}, "angle_sweep": [{"angle",
    "eq_error", "miou"}], "per_class_iou": [...]}``; ``rotated=False`` gives the clean
    metrics only (model selection).
    """
    num_classes = int(num_classes if num_classes is not None else model.num_classes)
    model.to(device).eval()
    loader = DataLoader(test_set, batch_size=spec.batch_size, shuffle=False)
    angles = sample_angles(len(test_set), spec.eval_rot, seed)
    meter = SegmentationMeter(num_classes)
    sweep_meters = [SegmentationMeter(num_classes) for _ in spec.sweep] if rotated else []
    at = 0
    for images, masks in tqdm(loader, desc=desc, leave=False):
        images, masks = images.to(device), masks.to(device)
        logits = model(images).float()
        if not rotated:
            meter.update(logits, masks)
            at += len(images)
            continue
        batch_angles = angles[at : at + len(images)].to(device)
        rot_logits = model(rotate_images(images, batch_angles)).float()
        rot_masks = _rotate_masks(masks, batch_angles)
        meter.update(logits, masks, rot_logits, rot_masks, batch_angles)
        for angle, sweep_meter in zip(spec.sweep, sweep_meters, strict=True):
            swept = model(rotate_images(images, angle)).float()
            sweep_meter.update(logits, masks, swept, _rotate_masks(masks, angle), angle)
        at += len(images)
    metrics = meter.compute()
    sweep = []
    for angle, sweep_meter in zip(spec.sweep, sweep_meters, strict=True):
        scores = sweep_meter.compute()
        sweep.append(
            {"angle": float(angle), "eq_error": scores["eq_error"], "miou": scores["rot_miou"]}
        )
    return {"metrics": metrics, "angle_sweep": sweep, "per_class_iou": meter.per_class_iou()}


def _rotate_masks(masks: torch.Tensor, angles) -> torch.Tensor:
    """Nearest rotation of (N, H, W) label maps, fill 255."""
    return rotate_images(masks[:, None], angles, mode="nearest", fill=IGNORE_INDEX)[:, 0]
