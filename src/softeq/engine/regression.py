"""Regression on declared representations (the O(5) experiment): training hooks of the generic
loop and the evaluation of test error, transformed-input error and invariance error.

Training minimises the mean squared error in the target's own units (the model's output is
de-standardised by :class:`Standardised`), with Adam's L2 weight decay, gradient clipping at norm
1 and a per-epoch schedule (cosine annealing to ``min_lr`` over the run, or a step decay), as
the reference's trainer (docs/fidelity.md).  The epoch kept is the best on the validation split
(its relative error by default, as the reference; or its MSE).  Auxiliary terms of the model
(RPP's prior) are added by the loop.

Metrics (docs/conventions.md §1): ``mse``; ``rel_error``, the mean over samples of
|f(x) - y| / (|f(x)| + |y| + 1e-6) (the reference's ``relative_norm_error``); ``rot_mse`` and
``rot_rel_error``, the same on inputs transformed by one random group element per sample
(``rho_in(g) x``; the target of an invariant task is unchanged); ``inv_error``, the mean
|f(rho_in(g) x) - f(x)|; and ``inv_error_rel``, the reference's normalised consistency error,
|f(gx) - f(x)| / (|f(gx)| + |f(x)| + 1e-6) averaged over samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from softeq.engine.fingerprint import Fingerprint
from softeq.engine.loop import TaskHooks, fit
from softeq.engine.recipe import TrainRecipe
from softeq.settings import at_least, one_of, positive

__all__ = [
    "EPS",
    "RegressionHooks",
    "RegressionRecipe",
    "Standardised",
    "evaluate_regression",
    "input_actions",
    "predict",
    "regression_errors",
    "train_regression",
]

EPS = 1e-6  # the reference's epsilon in its relative errors
EVAL_BATCH = 1000


@dataclass(frozen=True)
class RegressionRecipe(TrainRecipe):
    """Training hyper-parameters (config: ``finetune.regression.recipe`` and the backbones'
    ``recipe``); the defaults are the reference's soft-equivariant O(5) recipe."""

    epochs: int = 500
    batch_size: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-5  # Adam's L2 penalty (the reference's scripts pass 1e-5)
    schedule: str = "cosine"  # per epoch: "cosine" (T_max = epochs, to min_lr) or "step"
    min_lr: float = 5e-5  # cosine: the reference's eta_min
    step_size: int = 100  # step: epochs between decays
    gamma: float = 0.1  # step: the decay factor
    select: str = "rel_error"  # the validation score of the kept epoch: rel_error or mse

    def check(self) -> None:
        positive(self, "lr")
        for key in ("weight_decay", "min_lr", "gamma"):
            at_least(self, key, 0)
        at_least(self, "step_size", 1)
        one_of(self, "schedule", ("cosine", "step"))
        one_of(self, "select", ("rel_error", "mse"))

    def epoch_factor(self, epoch: int) -> float:
        """The learning-rate factor of epoch ``epoch`` (0-based), as torch's CosineAnnealingLR /
        StepLR stepped once an epoch."""
        if self.schedule == "step":
            return self.gamma ** (epoch // self.step_size)
        floor = self.min_lr / self.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))


class Standardised(nn.Module):
    """``y_std * model(x / x_scale) + y_mean``: the model sees standardised inputs and targets
    (per-vector input scales keep an O(n)-invariant model invariant)."""

    def __init__(self, model: nn.Module, x_scale: Any, y_mean: float, y_std: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("x_scale", torch.as_tensor(np.asarray(x_scale), dtype=torch.float32))
        self.register_buffer("y_mean", torch.tensor(float(y_mean)))
        self.register_buffer("y_std", torch.tensor(float(y_std)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x / self.x_scale.to(x.dtype))
        return out * self.y_std.to(out.dtype) + self.y_mean.to(out.dtype)


def predict(model: nn.Module, x: Tensor, batch: int = EVAL_BATCH) -> Tensor:
    """Predictions (N,) in evaluation mode, without gradients."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch]).reshape(-1) for i in range(0, len(x), batch)])
    finally:
        model.train(was_training)


def regression_errors(pred: Tensor, y: Tensor) -> dict[str, float]:
    """``mse`` and the reference's ``rel_error`` of predictions against targets (both (N,))."""
    pred, y = pred.double().reshape(-1), y.double().reshape(-1)
    rel = (pred - y).abs() / (pred.abs() + y.abs() + EPS)
    return {"mse": float(((pred - y) ** 2).mean()), "rel_error": float(rel.mean())}


class RegressionHooks(TaskHooks):
    """Adam with L2 decay, the recipe's per-epoch schedule, the summed squared error, and the
    validation score that picks the kept epoch."""

    def __init__(self, recipe: RegressionRecipe, val: tuple[Tensor, Tensor] | None = None) -> None:
        self.recipe = recipe
        self.val = val
        self.select = None if val is None else f"minus_{recipe.select}"

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.recipe.lr, weight_decay=self.recipe.weight_decay)

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        return lambda step: self.recipe.epoch_factor(step // steps_per_epoch)

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        x, y = batch
        return ((model(x).reshape(-1) - y.reshape(-1)) ** 2).sum(), {}

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        if self.val is None:
            return None
        x, y = self.val
        device = next(model.parameters()).device
        scores = regression_errors(predict(model, x.to(device)).cpu(), y)
        return {**scores, f"minus_{self.recipe.select}": -scores[self.recipe.select]}


def train_regression(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor] | None,
    recipe: RegressionRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    fingerprint: Fingerprint | None = None,
    best_checkpoint: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``train`` (x (N, d), y (N,)); resumable from ``checkpoint``.
    With ``val`` every epoch is scored and the best one written to ``best_checkpoint``.
    Returns the history (one record per epoch, ``val_mse`` / ``val_rel_error`` with ``val``)."""
    history, _ = fit(
        model,
        TensorDataset(*train),
        RegressionHooks(recipe, val),
        recipe,
        seed,
        checkpoint,
        device,
        desc="regression",
        stop_after_epochs=stop_after_epochs,
        best_checkpoint=best_checkpoint,
        fingerprint=fingerprint,
    )
    return history


def input_actions(group: str, in_rep: str, n: int, seed: int) -> Tensor:
    """``n`` random group elements acting on the input, (n, d, d) float64: ``rho_in(g)`` of
    ``matrix_group(group).sample(rng)`` with ``rng`` seeded by ``seed``."""
    from softeq.matrix_groups import matrix_group
    from softeq.reps import parse_rep

    matrices = matrix_group(group)
    rep = parse_rep(in_rep, matrices)
    rng = np.random.default_rng(seed)
    return torch.as_tensor(np.stack([rep.rho(matrices.sample(rng)) for _ in range(n)]))


def evaluate_regression(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    actions: Tensor,
    device: str = "cpu",
    batch: int = EVAL_BATCH,
) -> dict[str, float]:
    """Test errors on clean inputs and on inputs transformed by ``actions`` (one matrix per
    sample, from :func:`input_actions`), and the invariance errors (module docstring)."""
    model.to(device)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x = x.to(device, dtype)
    moved = torch.einsum("nij,nj->ni", actions.to(device, torch.float64), x.double()).to(dtype)
    clean, turned = predict(model, x, batch).cpu(), predict(model, moved, batch).cpu()
    rotated = regression_errors(turned, y)
    gap = (turned.double() - clean.double()).abs()
    return {
        **regression_errors(clean, y),
        "rot_mse": rotated["mse"],
        "rot_rel_error": rotated["rel_error"],
        "inv_error": float(gap.mean()),
        "inv_error_rel": float((gap / (turned.abs() + clean.abs() + EPS)).mean()),
    }
