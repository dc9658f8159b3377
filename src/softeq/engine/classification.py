"""Classification: the paper's timm-style fine-tuning recipe as hooks of the training loop, and
evaluation.

The recipe is built from timm's components: AdamW with layer-wise lr decay
(``param_groups_layer_decay``), mixup / cutmix (``Mixup``, soft-target cross-entropy), random
erasing, label smoothing, EMA (``ModelEmaV3``); :func:`softeq.engine.loop.fit` adds bf16
autocast, gradient accumulation and clipping, DDP, warmup + cosine per optimizer step, and the
resumable, reproducible checkpoint after every epoch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.engine.distributed import Distributed
from softeq.engine.evaluation import EvalSettings
from softeq.engine.fingerprint import Fingerprint
from softeq.engine.loop import TaskHooks, fit
from softeq.engine.recipe import TrainRecipe
from softeq.engine.schedule import epoch_cosine, warmup_cosine
from softeq.metrics.classification import ClassificationMeter
from softeq.metrics.equivariance import kl_divergence
from softeq.settings import SettingError, at_least, one_of, positive
from softeq.transforms import fit_input, rotate_images, sample_angles

__all__ = [
    "ClassificationHooks",
    "Recipe",
    "build_optimizer",
    "evaluate_classifier",
    "train_classifier",
]

EVAL_BATCH = 256  # images per evaluation batch unless the evaluation settings say otherwise


def _fraction(settings: Any, key: str, closed: bool = False) -> None:
    value = getattr(settings, key)
    if value is not None and not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise SettingError(key, f"must be in [0, 1{']' if closed else ')'}, got {value!r}")


@dataclass(frozen=True)
class Recipe(TrainRecipe):
    """Fine-tuning hyper-parameters (config: ``pretrain.recipe`` and ``finetune.recipe``).

    ``batch_size`` is the global batch per optimizer step: split over the DDP processes and the
    ``grad_accum`` micro-batches.  ``drop_path`` and ``auto_augment`` act where the model and the
    data are built (the CLI passes them on); the hooks apply the rest.  ``epochs: 0`` evaluates
    the (softened) pre-trained weights as they are, as the reference does for its baselines.
    """

    min_epochs: ClassVar[int] = 0

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    rotate_degrees: float = 0.0  # training augmentation: uniform random rotation (tensor data)
    layer_decay: float | None = None  # lr scale layer_decay^(depth - layer) per timm group
    drop_path: float = 0.0
    auto_augment: str | None = None  # timm RandAugment string, e.g. rand-m9-mstd0.5-inc1
    mixup: float = 0.0  # mixup alpha
    cutmix: float = 0.0  # cutmix alpha
    reprob: float = 0.0  # random erasing probability
    ema_decay: float | None = None  # evaluate the EMA of the weights when set
    amp: str = "none"  # "none" or "bf16" autocast
    head_epochs: int = 0  # train only the classifier head first (a linear probe), then all
    select_epoch: bool = False  # keep the epoch of best clean top-1 on the val split (the EMA's)
    schedule: str = "step"  # lr per optimizer step, or per epoch as timm's scheduler (reference)
    warmup_lr: float = 0.0  # schedule epoch: the warmup's first lr (timm's warmup_lr)

    def check(self) -> None:
        positive(self, "lr")
        for key in ("min_lr", "weight_decay", "warmup_epochs", "rotate_degrees"):
            at_least(self, key, 0)
        for key in ("mixup", "cutmix", "head_epochs"):
            at_least(self, key, 0)
        positive(self, "layer_decay")
        for key in ("label_smoothing", "drop_path", "ema_decay"):
            _fraction(self, key)
        _fraction(self, "reprob", closed=True)
        one_of(self, "amp", ("none", "bf16"))
        one_of(self, "schedule", ("step", "epoch"))
        at_least(self, "warmup_lr", 0)
        if self.warmup_lr and self.schedule != "epoch":
            raise SettingError("warmup_lr", "applies to schedule: epoch (timm's warmup)")
        if self.schedule == "epoch" and self.warmup_epochs != int(self.warmup_epochs):
            raise SettingError("warmup_epochs", "must be whole epochs with schedule: epoch")

    @property
    def bf16(self) -> bool:
        return self.amp == "bf16"

    @property
    def ema(self) -> float | None:
        return self.ema_decay

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


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


class ClassificationHooks(TaskHooks):
    """Rotation, random erasing, mixup / cutmix, (soft-target) cross-entropy summed over the
    images of a batch, and the linear probe of the first ``head_epochs``."""

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        input_size: int,
        num_classes: int | None,
        val_set: Dataset | None = None,
    ):
        self.recipe, self.input_size = recipe, input_size
        if recipe.select_epoch and val_set is None:
            raise ValueError("select_epoch needs a validation split")
        self.val_set = val_set
        self.select = "acc" if recipe.select_epoch else None
        self.drop_last = recipe.mixing  # timm's mixup needs even batches
        self.mixup = None
        if recipe.mixing:
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=recipe.mixup,
                cutmix_alpha=recipe.cutmix,
                label_smoothing=recipe.label_smoothing,
                num_classes=num_classes,
            )
        self.erase = None
        self.angles: Tensor | None = None
        self.body: list[nn.Parameter] = []
        if recipe.head_epochs:
            if not hasattr(model, "get_classifier"):
                raise ValueError(f"head_epochs: {type(model).__name__} has no timm classifier head")
            head = {id(p) for p in model.get_classifier().parameters()}
            self.body = [p for p in model.parameters() if id(p) not in head]

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(model, self.recipe)

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        recipe = self.recipe
        if recipe.schedule == "epoch":
            warmup = round(recipe.warmup_epochs)
            start, floor = recipe.warmup_lr / recipe.lr, recipe.min_lr / recipe.lr
            per_epoch = epoch_cosine(warmup, recipe.epochs, start, floor)
            return lambda step: per_epoch(step // steps_per_epoch)
        warmup = max(1, round(recipe.warmup_epochs * steps_per_epoch))
        return warmup_cosine(warmup, recipe.epochs * steps_per_epoch, recipe.min_lr / recipe.lr)

    def start_epoch(self, dataset: Dataset, epoch: int, seed: int) -> None:
        super().start_epoch(dataset, epoch, seed)
        if self.recipe.rotate_degrees:  # one angle per image and epoch: the same on any split
            self.angles = sample_angles(len(dataset), self.recipe.rotate_degrees, seed * 7919)

    def prepare(self, batch: Any, indices: list[int], device: torch.device) -> Any:
        x, y = (t.to(device, non_blocking=True) for t in batch)
        if self.angles is not None:
            x = rotate_images(x, self.angles[indices].to(device))
        x = fit_input(x, self.input_size)
        if self.recipe.reprob:
            from timm.data.random_erasing import RandomErasing

            if self.erase is None:
                self.erase = RandomErasing(self.recipe.reprob, mode="pixel", device=str(device))
            x = self.erase(x)
        target = y
        if self.mixup is not None:
            x, target = self.mixup(x, y)
        return x, target, y

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        x, target, y = batch
        logits = model(x).float()
        if self.mixup is not None:  # soft targets: timm's SoftTargetCrossEntropy, summed
            loss = torch.sum(-target * F.log_softmax(logits, dim=-1))
        else:
            smoothing = self.recipe.label_smoothing
            loss = F.cross_entropy(logits, target, label_smoothing=smoothing, reduction="sum")
        return loss, {"correct": (logits.argmax(1) == y).sum()}

    def before_step(self, model: nn.Module, epoch: int) -> None:
        if epoch < self.recipe.head_epochs:  # linear probe: only the head moves
            for param in self.body:
                param.grad = None

    def summary(self, totals: dict[str, float]) -> dict[str, float]:
        return {"train_acc": totals["correct"] / max(totals["count"], 1)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        """Clean top-1 on the validation split when epochs are selected (timm's ``top1``)."""
        if self.select is None:
            return None
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        correct = 0
        for x, y in DataLoader(self.val_set, batch_size=EVAL_BATCH, shuffle=False):
            logits = model(fit_input(x.to(device), self.input_size))
            correct += int((logits.argmax(1) == y.to(device)).sum())
        model.train(was_training)
        return {"acc": correct / len(self.val_set)}


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
    fingerprint: Fingerprint | None = None,
    until_epoch: int | None = None,
    val_set: Dataset | None = None,
    best_checkpoint: str | Path | None = None,
) -> tuple[list[dict[str, float]], nn.Module | None]:
    """Train ``model`` in place; resume from ``checkpoint`` when it exists.

    Returns the history (one record per epoch: loss, train accuracy, learning rate, and with
    ``recipe.select_epoch`` the clean top-1 ``val_acc`` of ``val_set``, scored on the EMA when
    there is one; the best epoch's weights go to ``best_checkpoint``) and the EMA model (None
    without ``ema_decay``).  Launched by torchrun, each process trains a DDP replica.
    ``stop_after_epochs`` ends the call early, as if killed, for tests of resume.
    """
    if recipe.mixing:
        if num_classes is None:
            raise ValueError("mixup / cutmix need num_classes")
        micro = recipe.batch_size // (Distributed.from_env(device).world_size * recipe.grad_accum)
        if micro % 2:
            raise ValueError(f"mixup / cutmix need an even micro-batch, got {micro}")
    hooks = ClassificationHooks(model, recipe, input_size, num_classes, val_set)
    return fit(
        model,
        train_set,
        hooks,
        recipe,
        seed,
        checkpoint,
        device,
        desc,
        stop_after_epochs,
        best_checkpoint=best_checkpoint,
        fingerprint=fingerprint,
        until_epoch=until_epoch,
    )


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    test_set: Dataset,
    spec: EvalSettings,
    seed: int,
    input_size: int,
    device: str = "cpu",
    desc: str = "evaluate",
) -> dict[str, Any]:
    """Clean / rotated accuracy, combined score (over the split, and per evaluation batch as the
    reference code: ``combined_batches``), KL invariance error, the exact 90-degree invariance
    error, and the error against a fixed sweep of angles (docs/conventions.md §1)."""
    model.to(device).eval()
    loader = DataLoader(test_set, batch_size=spec.batch(EVAL_BATCH), shuffle=False)
    angles = sample_angles(len(test_set), spec.eval_rot, seed)  # one angle per sample
    damp = spec.damp_border  # the inputs are normalised: fill 0 is the mean, as the reference's
    meter = ClassificationMeter()
    rot90_kl, sweep_kl, sweep_correct = 0.0, [0.0] * len(spec.sweep), [0] * len(spec.sweep)
    at = 0
    for x, y in tqdm(loader, desc=desc, leave=False):
        x, y = x.to(device), y.to(device)
        logits = model(fit_input(x, input_size))
        rotated = rotate_images(x, angles[at : at + len(x)].to(device), damp_border=damp)
        meter.update(logits, model(fit_input(rotated, input_size)), y)
        turned = model(fit_input(torch.rot90(x, 1, (2, 3)), input_size))
        rot90_kl += float(kl_divergence(logits, turned).sum())
        for i, angle in enumerate(spec.sweep):
            swept = model(fit_input(rotate_images(x, angle, damp_border=damp), input_size))
            sweep_kl[i] += float(kl_divergence(logits, swept).sum())
            sweep_correct[i] += int((swept.argmax(1) == y).sum())
        at += len(x)
    metrics = meter.compute()
    metrics["combined_batches"] = meter.combined_batches()
    metrics["inv_error_rot90"] = rot90_kl / at
    sweep = [
        {"angle": angle, "inv_error": kl / at, "acc": correct / at}
        for angle, kl, correct in zip(spec.sweep, sweep_kl, sweep_correct, strict=True)
    ]
    return {"metrics": metrics, "angle_sweep": sweep}
