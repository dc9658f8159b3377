"""Segmentation: fine-tuning with head / backbone learning rates as hooks of the training loop,
and evaluation.

The recipe follows the paper (docs/paper.md, PASCAL VOC): AdamW with three parameter groups (the
head at ``head_lr``; the backbone at ``backbone_lr``, split into weights with weight decay and
norms / biases / positional embeddings / special tokens without), ``warmup_iters`` of linear
warmup then a per-iteration cosine to ``min_lr_ratio`` times each group's rate, gradient
clipping, cross-entropy with 255 ignored, averaged over the labelled pixels of the global batch.

:func:`softeq.engine.loop.fit` makes training resumable, reproducible and data-parallel; the
augmentation of every sample derives from (seed, epoch, index) (``set_epoch`` on the dataset).
With a ``val_set`` (the held-out selection split) every epoch is scored on ``select_metric`` and
the best weights are written to ``best_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.engine.evaluation import EvalSettings
from softeq.engine.fingerprint import Fingerprint
from softeq.engine.loop import TaskHooks, fit
from softeq.engine.recipe import TrainRecipe
from softeq.engine.schedule import warmup_cosine
from softeq.metrics.segmentation import IGNORE_INDEX, SegmentationMeter
from softeq.settings import SettingError, at_least, one_of, positive
from softeq.transforms import rotate_images, sample_angles

__all__ = [
    "SegRecipe",
    "SegmentationHooks",
    "evaluate_segmenter",
    "param_groups",
    "train_segmenter",
]

SELECT_METRICS = ("miou", "rot_miou", "combined", "pixel_acc")
EVAL_BATCH = 16  # images per evaluation batch unless the evaluation settings say otherwise
_NO_DECAY_NAMES = (
    "pos_embed",
    "cls_token",
    "reg_token",
    "dist_token",
    "mask_token",
    "pos_block",
    "position_embeddings",  # transformers ViT / DINOv2 (vit_hf, dinov2_hf)
    "register_tokens",
)


@dataclass(frozen=True)
class SegRecipe(TrainRecipe):
    """Fine-tuning hyper-parameters (config: ``finetune`` for segmentation)."""

    epochs: int = 100
    batch_size: int = 32
    head_lr: float = 1e-3
    backbone_lr: float = 5e-5  # 0 freezes the backbone
    weight_decay: float = 0.01
    decay_all: bool = False  # also decay norms, biases, positional embeddings (the reference)
    warmup_iters: int = 250
    min_lr_ratio: float = 0.0
    select_metric: str = "miou"
    amp: bool = False  # bf16 autocast
    num_workers: int = 0

    def check(self) -> None:
        positive(self, "head_lr")
        for key in ("backbone_lr", "weight_decay", "warmup_iters", "min_lr_ratio", "num_workers"):
            at_least(self, key, 0)
        if self.min_lr_ratio > 1:
            raise SettingError("min_lr_ratio", f"must be <= 1, got {self.min_lr_ratio!r}")
        one_of(self, "select_metric", SELECT_METRICS)

    @property
    def bf16(self) -> bool:
        return self.amp


def _is_head(model: nn.Module, name: str) -> bool:
    is_head = getattr(model, "is_head", None)
    if is_head is not None:
        return bool(is_head(name))
    return name.startswith(("head.", "decode_head."))


def _no_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or any(token in name for token in _NO_DECAY_NAMES)


def param_groups(model: nn.Module, recipe: SegRecipe) -> list[dict[str, Any]]:
    """The three AdamW groups: head; backbone with decay; backbone without (norms, biases,
    positional embeddings, tokens; decayed too with ``recipe.decay_all``, as the reference).
    Head parameters are those ``model.is_head`` names.  Empty groups are dropped."""
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
            "weight_decay": recipe.weight_decay if recipe.decay_all else 0.0,
        },
    ]
    return [g for g in groups if g["params"]]


class SegmentationHooks(TaskHooks):
    """Three AdamW groups, per-iteration warmup + cosine, pixel cross-entropy summed over the
    labelled pixels; best-epoch selection on ``val_set`` by ``recipe.select_metric``."""

    def __init__(
        self,
        recipe: SegRecipe,
        seed: int,
        val_set: Dataset | None = None,
        eval_spec: EvalSettings | None = None,
        device: str = "cpu",
        desc: str = "train",
    ) -> None:
        self.recipe, self.seed, self.val_set = recipe, seed, val_set
        self.eval_spec = EvalSettings(sweep=()) if eval_spec is None else eval_spec
        self.device, self.desc = device, desc
        self.num_workers = recipe.num_workers
        self.select = recipe.select_metric

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(param_groups(model, self.recipe))

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        total = self.recipe.epochs * steps_per_epoch
        return warmup_cosine(self.recipe.warmup_iters, total, self.recipe.min_lr_ratio)

    def count(self, batch: Any) -> Tensor:
        return (batch[1] != IGNORE_INDEX).sum()

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        images, masks = batch
        logits = model(images).float()
        loss = F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX, reduction="sum")
        with torch.no_grad():
            correct = ((logits.argmax(1) == masks) & (masks != IGNORE_INDEX)).sum()
        return loss, {"correct": correct}

    def summary(self, totals: dict[str, float]) -> dict[str, float]:
        return {"train_pixel_acc": totals["correct"] / max(totals["count"], 1)}

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        if self.val_set is None:
            return None
        spec = EvalSettings(self.eval_spec.eval_rot, (), self.eval_spec.batch_size)
        return evaluate_segmenter(
            model,
            self.val_set,
            spec,
            self.seed,
            device=self.device,
            desc=f"{self.desc} select",
            rotated=self.select in ("rot_miou", "combined"),
        )["metrics"]


def train_segmenter(
    model: nn.Module,
    train_set: Dataset,
    recipe: SegRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    val_set: Dataset | None = None,
    best_checkpoint: str | Path | None = None,
    eval_spec: EvalSettings | None = None,
    device: str = "cpu",
    desc: str = "train",
    stop_after_epochs: int | None = None,
    fingerprint: Fingerprint | None = None,
    until_epoch: int | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.

    Returns the history (one record per epoch: loss, train pixel accuracy, learning rates, and
    ``val_<metric>`` when ``val_set`` is given). The model ends with the last epoch's weights;
    the best epoch's (by ``recipe.select_metric`` on ``val_set``) are in ``best_checkpoint``
    (``{"model", "epoch", "score", "metric"}``). ``stop_after_epochs`` ends the call early, as if
    killed, for tests of resume.
    """
    hooks = SegmentationHooks(recipe, seed, val_set, eval_spec, device, desc)
    history, _ = fit(
        model,
        train_set,
        hooks,
        recipe,
        seed,
        checkpoint,
        device,
        desc,
        stop_after_epochs,
        best_checkpoint,
        fingerprint,
        until_epoch,
    )
    return history


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module,
    test_set: Dataset,
    spec: EvalSettings,
    seed: int,
    num_classes: int | None = None,
    device: str = "cpu",
    desc: str = "evaluate",
    rotated: bool = True,
) -> dict[str, Any]:
    """Clean / rotated mIoU, combined score, equivariance error, pixel accuracy, and the
    equivariance error and mIoU against a fixed sweep of angles (docs/conventions.md §1).

    Every sample i is rotated by ``sample_angles(len(test_set), spec.eval_rot, seed)[i]``
    (images bilinear with fill 0, masks nearest with fill 255). Returns ``{"metrics": {miou,
    rot_miou, combined, eq_error, eq_error_reference, pixel_acc, rot_pixel_acc},
    "angle_sweep": [{"angle", "eq_error", "miou"}], "per_class_iou": [...]}``;
    ``rotated=False`` gives the clean metrics only (model selection).
    """
    num_classes = int(num_classes if num_classes is not None else model.num_classes)
    model.to(device).eval()
    loader = DataLoader(test_set, batch_size=spec.batch(EVAL_BATCH), shuffle=False)
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
        rot_logits = model(_rotate_images(model, images, batch_angles, spec)).float()
        rot_masks = _rotate_masks(masks, batch_angles)
        meter.update(logits, masks, rot_logits, rot_masks, batch_angles)
        for angle, sweep_meter in zip(spec.sweep, sweep_meters, strict=True):
            swept = model(_rotate_images(model, images, angle, spec)).float()
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


def _rotate_images(model: nn.Module, images: Tensor, angles, spec: EvalSettings) -> Tensor:
    """Rotated evaluation inputs: fill 0 (black) on the [0, 1] images; with ``damp_border`` the
    reference's rotation of the normalised images (fill 0 = the model's mean colour, border
    damped twice)."""
    if not spec.damp_border:
        return rotate_images(images, angles)
    mean = getattr(model, "mean", None)
    if mean is None:
        raise ValueError(f"damp_border: {type(model).__name__} has no normalisation mean")
    return rotate_images(images - mean, angles, damp_border=True) + mean


def _rotate_masks(masks: torch.Tensor, angles) -> torch.Tensor:
    """Nearest rotation of (N, H, W) label maps, fill 255."""
    return rotate_images(masks[:, None], angles, mode="nearest", fill=IGNORE_INDEX)[:, 0]
