"""Classification: fine-tuning with warmup + cosine, checkpoint/resume, and rotated evaluation.

Training is resumable and reproducible: the checkpoint after each epoch holds the model,
optimizer and scheduler; the data order and every random draw of epoch e come from generators
seeded by (seed, e), so a run killed and resumed ends with the same weights as one that was not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
from softeq.metrics.classification import ClassificationMeter
from softeq.metrics.equivariance import kl_divergence, rotate_images, sample_angles

__all__ = ["EvalSpec", "Recipe", "evaluate_classifier", "train_classifier"]


@dataclass(frozen=True)
class Recipe:
    """Fine-tuning hyper-parameters (config: ``pretrain`` and ``finetune``)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    rotate_degrees: float = 0.0  # training augmentation: uniform random rotation
    grad_clip: float = 1.0

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation settings (config: ``evaluate``)."""

    eval_rot: float = 30.0  # rotated evaluation: angles uniform in [-eval_rot, +eval_rot] degrees
    sweep: tuple[float, ...] = (-180, -135, -90, -45, -30, -15, 0, 15, 30, 45, 90, 135, 180)
    batch_size: int = 256

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "evaluate") -> EvalSpec:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        values = dict(values)
        if "sweep" in values:
            values["sweep"] = tuple(float(a) for a in values["sweep"])
        return cls(**values)


def fit_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images to the backbone's input size (symmetric bilinear: commutes with rot90)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _lr_lambda(recipe: Recipe, steps_per_epoch: int):
    warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch))
    total = max(recipe.epochs * steps_per_epoch, warmup + 1)
    floor = recipe.min_lr / recipe.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / (total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def train_classifier(
    model: nn.Module,
    train_set: Dataset,
    recipe: Recipe,
    seed: int,
    input_size: int,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    desc: str = "train",
    stop_after_epochs: int | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.  Returns the history
    (one record per epoch: loss, train accuracy, learning rate).

    ``stop_after_epochs`` ends the call early after that many epochs of this call (as if killed),
    for tests of resume.
    """
    model.to(device)
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
    )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(recipe, steps_per_epoch))
    history: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if state.get("recipe") != asdict(recipe) or state.get("seed") != seed:
            raise ValueError(f"{checkpoint}: written by another recipe or seed; delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start = list(state["history"]), int(state["epoch"]) + 1
    end = (
        recipe.epochs
        if stop_after_epochs is None
        else min(recipe.epochs, start + stop_after_epochs)
    )
    for epoch in range(start, end):
        history.append(_train_epoch(model, train_set, recipe, seed, epoch, input_size,
                                    optimizer, scheduler, device, desc))  # fmt: skip
        if checkpoint is not None:
            save_checkpoint(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                 "recipe": asdict(recipe), "seed": seed},
                checkpoint,
            )  # fmt: skip
    return history


def _train_epoch(model, train_set, recipe, seed, epoch, input_size, optimizer, scheduler,
                 device, desc) -> dict[str, float]:  # fmt: skip
    model.train()
    epoch_seed = _epoch_seed(seed, epoch)
    torch.manual_seed(epoch_seed)  # dropout / drop-path draws: reproducible per epoch on resume
    order = torch.Generator().manual_seed(epoch_seed)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True, generator=order)
    total_loss, correct, count = 0.0, 0, 0
    bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}", leave=False)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device), y.to(device)
        if recipe.rotate_degrees:
            angles = sample_angles(len(x), recipe.rotate_degrees, epoch_seed * 7919 + step)
            x = rotate_images(x, angles.to(device))
        logits = model(fit_input(x, input_size))
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(x)
        correct += int((logits.argmax(1) == y).sum())
        count += len(x)
        bar.set_postfix(loss=f"{total_loss / count:.3f}")
    return {"epoch": epoch + 1, "loss": total_loss / count, "train_acc": correct / count,
            "lr": scheduler.get_last_lr()[0]}  # fmt: skip


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    test_set: Dataset,
    spec: EvalSpec,
    seed: int,
    input_size: int,
    device: str = "cpu",
    desc: str = "evaluate",
) -> dict[str, Any]:
    """Clean / rotated accuracy, combined score, KL invariance error (DESIGN 4), the exact
    90-degree invariance error, and the error against a fixed sweep of angles."""
    model.to(device).eval()
    loader = DataLoader(test_set, batch_size=spec.batch_size, shuffle=False)
    angles = sample_angles(len(test_set), spec.eval_rot, seed)  # one angle per sample
    meter = ClassificationMeter()
    rot90_kl, sweep_kl, sweep_correct = 0.0, [0.0] * len(spec.sweep), [0] * len(spec.sweep)
    at = 0
    for x, y in tqdm(loader, desc=desc, leave=False):
        x, y = x.to(device), y.to(device)
        logits = model(fit_input(x, input_size))
        rotated = rotate_images(x, angles[at : at + len(x)].to(device))
        meter.update(logits, model(fit_input(rotated, input_size)), y)
        turned = model(fit_input(torch.rot90(x, 1, (2, 3)), input_size))
        rot90_kl += float(kl_divergence(logits, turned).sum())
        for i, angle in enumerate(spec.sweep):
            swept = model(fit_input(rotate_images(x, angle), input_size))
            sweep_kl[i] += float(kl_divergence(logits, swept).sum())
            sweep_correct[i] += int((swept.argmax(1) == y).sum())
        at += len(x)
    metrics = meter.compute()
    metrics["inv_error_rot90"] = rot90_kl / at
    sweep = [
        {"angle": angle, "inv_error": kl / at, "acc": correct / at}
        for angle, kl, correct in zip(spec.sweep, sweep_kl, sweep_correct, strict=True)
    ]
    return {"metrics": metrics, "angle_sweep": sweep}
