"""Classification: the paper's timm-style fine-tuning recipe, checkpoint/resume, and evaluation.

The recipe is built from timm's components: AdamW with layer-wise lr decay
(``param_groups_layer_decay``), mixup / cutmix (``Mixup`` + ``SoftTargetCrossEntropy``), random
erasing, label smoothing, EMA (``ModelEmaV3``); plus bf16 autocast, gradient accumulation and
clipping, warmup + cosine per optimizer step, and DDP when launched by torchrun.

Training is resumable and reproducible: the checkpoint after each epoch holds the model,
optimizer, scheduler and EMA; the data order and every random draw of epoch e come from seeds
(seed, e, rank), so a run killed and resumed ends with the same weights as one that was not.
"""

from __future__ import annotations

import math
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from softeq.engine.distributed import Distributed, seed_everything
from softeq.engine.schedule import epoch_seed as epoch_seed_of
from softeq.engine.schedule import epochs_to_run, resume, save_state, warmup_cosine
from softeq.metrics.classification import ClassificationMeter
from softeq.metrics.equivariance import kl_divergence
from softeq.settings import from_dict
from softeq.transforms import rotate_images, sample_angles

__all__ = ["EvalSpec", "Recipe", "build_optimizer", "evaluate_classifier", "train_classifier"]


@dataclass(frozen=True)
class Recipe:
    """Fine-tuning hyper-parameters (config: ``pretrain.recipe`` and ``finetune.recipe``).

    ``batch_size`` is the global batch per optimizer step: split over the DDP processes and the
    ``grad_accum`` micro-batches.  ``drop_path`` and ``auto_augment`` act where the model and the
    data are built (the CLI passes them on); the loop applies the rest.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    rotate_degrees: float = 0.0  # training augmentation: uniform random rotation (tensor data)
    grad_clip: float = 1.0
    layer_decay: float | None = None  # lr scale layer_decay^(depth - layer) per timm group
    drop_path: float = 0.0
    auto_augment: str | None = None  # timm RandAugment string, e.g. rand-m9-mstd0.5-inc1
    mixup: float = 0.0  # mixup alpha
    cutmix: float = 0.0  # cutmix alpha
    reprob: float = 0.0  # random erasing probability
    ema_decay: float | None = None  # evaluate the EMA of the weights when set
    amp: str = "none"  # "none" or "bf16" autocast
    grad_accum: int = 1
    head_epochs: int = 0  # train only the classifier head first (a linear probe), then all

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> Recipe:
        recipe = from_dict(cls, values, where)
        if recipe.amp not in ("none", "bf16"):
            raise ValueError(f"{where}.amp: {recipe.amp!r} is not supported; use 'none' or 'bf16'")
        if recipe.grad_accum < 1:
            raise ValueError(f"{where}.grad_accum must be >= 1")
        return recipe


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation settings (config: ``evaluate``)."""

    eval_rot: float = 30.0  # rotated evaluation: angles uniform in [-eval_rot, +eval_rot] degrees
    sweep: tuple[float, ...] = (-180, -135, -90, -45, -30, -15, 0, 15, 30, 45, 90, 135, 180)
    batch_size: int = 256

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "evaluate") -> EvalSpec:
        return from_dict(cls, values, where, tuples=("sweep",))


def fit_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images to the backbone's input size (symmetric bilinear: commutes with rot90)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


_SOFT_NAME = re.compile(r"parametrizations\.(\w+)\.original$")


class _PlainNames:
    """A view of a (softened) model whose parameter names read as the plain model's.

    timm's layer grouping and no-weight-decay lists match names like ``patch_embed.proj.weight``
    and ``pos_embed``; a soft tensor's raw parameter is ``...parametrizations.weight.original``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def named_parameters(self):
        for name, param in self.model.named_parameters():
            yield _SOFT_NAME.sub(r"\1", name), param

    def group_matcher(self, coarse: bool = False):
        return self.model.group_matcher(coarse=coarse)


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW over timm's parameter groups: no decay for 1-d tensors and the model's
    ``no_weight_decay()`` names; layer-wise lr decay when the recipe asks for it."""
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    view = _PlainNames(model)
    if recipe.layer_decay is not None:
        if not hasattr(model, "group_matcher"):
            raise ValueError(f"layer_decay: {type(model).__name__} has no timm group_matcher")
        groups = param_groups_layer_decay(
            view, recipe.weight_decay, skip, layer_decay=recipe.layer_decay
        )
    else:
        groups = param_groups_weight_decay(view, recipe.weight_decay, skip)
    for group in groups:
        group["lr"] = recipe.lr * group.pop("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=recipe.lr)


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
    num_classes: int | None = None,
) -> tuple[list[dict[str, float]], nn.Module | None]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.

    Returns the history (one record per epoch: loss, train accuracy, learning rate) and the EMA
    model (None without ``ema_decay``).  Launched by torchrun, each process trains a DDP replica.
    ``stop_after_epochs`` ends the call early, as if killed, for tests of resume.
    """
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing
    from timm.loss import SoftTargetCrossEntropy
    from timm.utils import ModelEmaV3

    ctx = Distributed.from_env(device)
    per_step = ctx.world_size * recipe.grad_accum
    if recipe.batch_size % per_step:
        raise ValueError(
            f"batch_size {recipe.batch_size} is not divisible by {ctx.world_size} processes x "
            f"{recipe.grad_accum} accumulation steps"
        )
    micro_batch = recipe.batch_size // per_step
    mixing = recipe.mixup > 0 or recipe.cutmix > 0
    if mixing and num_classes is None:
        raise ValueError("mixup / cutmix need num_classes")
    if mixing and micro_batch % 2:
        raise ValueError(f"mixup / cutmix need an even micro-batch, got {micro_batch}")
    model.to(ctx.device)
    replica = model
    if ctx.world_size > 1:
        replica = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    sampler = DistributedSampler(
        train_set, ctx.world_size, ctx.rank, shuffle=True, seed=seed, drop_last=mixing
    )
    loader = DataLoader(train_set, batch_size=micro_batch, sampler=sampler, drop_last=mixing)
    steps_per_epoch = math.ceil(len(loader) / recipe.grad_accum)
    optimizer = build_optimizer(model, recipe)
    warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch))
    schedule = warmup_cosine(warmup, recipe.epochs * steps_per_epoch, recipe.min_lr / recipe.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    ema = ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema_decay else None
    mixup = (
        Mixup(
            mixup_alpha=recipe.mixup,
            cutmix_alpha=recipe.cutmix,
            label_smoothing=recipe.label_smoothing,
            num_classes=num_classes,
        )
        if mixing
        else None
    )
    erase = (
        RandomErasing(recipe.reprob, mode="pixel", device=str(ctx.device))
        if recipe.reprob
        else None
    )
    history, start, state = resume(checkpoint, recipe, seed, model, optimizer, scheduler)
    body = []
    if recipe.head_epochs:
        if not hasattr(model, "get_classifier"):
            raise ValueError(f"head_epochs: {type(model).__name__} has no timm classifier head")
        head = {id(p) for p in model.get_classifier().parameters()}
        body = [p for p in model.parameters() if id(p) not in head]
    if ema is not None and state:
        ema.module.load_state_dict(state["ema"])
    loss_fn = (
        SoftTargetCrossEntropy()
        if mixing
        else nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    )
    for epoch in epochs_to_run(recipe.epochs, start, stop_after_epochs):
        replica.train()
        epoch_seed = epoch_seed_of(seed, epoch)
        seed_everything(epoch_seed * 1009 + ctx.rank)  # dropout, drop path, mixup, erasing
        sampler.set_epoch(epoch)
        total_loss, correct, count = 0.0, 0, 0
        bar = tqdm(
            loader,
            desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}",
            leave=False,
            disable=not ctx.is_main,
        )
        optimizer.zero_grad(set_to_none=True)
        for step, (x, y) in enumerate(bar):
            x, y = x.to(ctx.device), y.to(ctx.device)
            if recipe.rotate_degrees:
                angles = sample_angles(len(x), recipe.rotate_degrees, epoch_seed * 7919 + step)
                x = rotate_images(x, angles.to(ctx.device))
            x = fit_input(x, input_size)
            if erase is not None:
                x = erase(x)
            target = y
            if mixup is not None:
                x, target = mixup(x, y)
            last = (step + 1) % recipe.grad_accum == 0 or step + 1 == len(loader)
            # gradients are all-reduced on the last micro-batch of each optimizer step only
            sync = nullcontext() if last or ctx.world_size == 1 else replica.no_sync()
            with sync:
                with torch.autocast(ctx.device.type, torch.bfloat16, enabled=recipe.amp == "bf16"):
                    logits = replica(x)
                    loss = loss_fn(logits.float(), target)
                (loss / recipe.grad_accum).backward()
            if last:
                if epoch < recipe.head_epochs:  # linear probe: only the head moves
                    for param in body:
                        param.grad = None
                if recipe.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update(model, step=scheduler.last_epoch)
            total_loss += loss.item() * len(x)
            correct += int((logits.argmax(1) == y).sum())
            count += len(x)
            bar.set_postfix(loss=f"{total_loss / count:.3f}")
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total_loss / count,
                "train_acc": correct / count,
                "lr": scheduler.get_last_lr()[0],
            }
        )
        if checkpoint is not None and ctx.is_main:
            save_state(
                checkpoint,
                recipe,
                seed,
                epoch,
                history,
                model,
                optimizer,
                scheduler,
                world_size=ctx.world_size,
                ema=ema.module.state_dict() if ema is not None else None,
            )
        ctx.barrier()
    return history, (ema.module if ema is not None else None)


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
