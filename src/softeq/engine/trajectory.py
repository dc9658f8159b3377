"""Trajectories: teacher-forced training with rotation augmentation as hooks of the training
loop, and clean / rotated / equivariance evaluation with autoregressive rollout.

Batches are windows (:func:`softeq.data.eth_ucy.collate_windows`); every real agent of a window
is one sample of the per-agent model.  Augmentation rotates each window (observations and future
together) about the world origin by its own angle, uniform in [-rotate_degrees, +rotate_degrees]
and drawn per (seed, epoch, window index), so it does not depend on how windows are batched.

Loss weighting: windows hold different numbers of agents, so the loss is the squared L2 error of
the teacher-forced one-step predictions summed over every agent and future step, divided by the
number of agent steps of the whole global batch (:mod:`softeq.engine.loop` sums that count over
the DDP processes before the backward pass): each agent step weighs the same on 1 or N
processes, and one process with one micro-batch gets the plain mean (metres^2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.data.eth_ucy import collate_windows
from softeq.engine.evaluation import EvalSettings
from softeq.engine.fingerprint import Fingerprint
from softeq.engine.loop import TaskHooks, fit
from softeq.engine.recipe import TrainRecipe
from softeq.engine.schedule import warmup_cosine
from softeq.metrics.trajectory import TrajectoryMeter, displacement_errors
from softeq.settings import SettingError, at_least, one_of, positive
from softeq.transforms import rotate_trajectories, sample_angles

__all__ = [
    "TrajectoryHooks",
    "TrajectoryRecipe",
    "evaluate_trajectory",
    "train_trajectory",
]

EVAL_BATCH = 256  # windows per evaluation batch unless the evaluation settings say otherwise


@dataclass(frozen=True)
class TrajectoryRecipe(TrainRecipe):
    """Training hyper-parameters (config: ``finetune`` for trajectories; the paper's defaults,
    docs/paper.md)."""

    epochs: int = 100
    batch_size: int = 128  # windows per optimizer step
    lr: float = 5e-4
    min_lr: float = 0.0
    weight_decay: float = 1e-5  # Adam's L2 penalty (not AdamW's decoupled decay)
    warmup_epochs: float = 0.0
    rotate_degrees: float = 30.0  # augmentation: uniform random rotation about the origin
    schedule: str = "step"  # cosine per optimizer step, or per "epoch" (the reference's)
    loss_per: str = "step"  # squared error per agent step, or per "coordinate" (the reference)
    select_epoch: bool = False  # keep the epoch of best validation ADE (the reference)

    def check(self) -> None:
        positive(self, "lr")
        for key in ("min_lr", "weight_decay", "warmup_epochs", "rotate_degrees"):
            at_least(self, key, 0)
        one_of(self, "schedule", ("step", "epoch"))
        one_of(self, "loss_per", ("step", "coordinate"))
        if self.schedule == "epoch" and self.warmup_epochs:
            raise SettingError("warmup_epochs", "the per-epoch schedule has no warmup; set it to 0")


def _dtype(model: nn.Module) -> torch.dtype:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _is_scene(model: nn.Module) -> bool:
    """Whether ``model`` takes whole padded windows (a scene model) rather than single agents."""
    return bool(getattr(getattr(model, "module", model), "scene", False))


def _pad_agents(x: Tensor, size: int) -> Tensor:
    """Zero-pad the agent axis (dim 1) of windows to ``size`` agents."""
    if x.shape[1] > size:
        raise ValueError(f"a window holds {x.shape[1]} agents, more than the model's {size}")
    return F.pad(x, (0, 0) * (x.dim() - 2) + (0, size - x.shape[1]))


def predict(model: nn.Module, obs: Tensor, mask: Tensor, fut: Tensor | None = None) -> Tensor:
    """Predictions (B, A, pred_len, 2) for padded windows ``obs`` (B, A, obs_len, 2), from a
    scene model (the windows padded to its ``max_agents``) or a per-agent one (its real agents);
    teacher-forced when ``fut`` is given, else rolled out.  Rows of absent agents are zero."""
    core = getattr(model, "module", model)
    if _is_scene(model):
        size = core.max_agents
        padded = _pad_agents(obs, size)
        out = model(padded, None if fut is None else _pad_agents(fut, size))
        return out[:, : obs.shape[1]] * mask[..., None, None]
    out = model(obs[mask], None if fut is None else fut[mask])
    full = out.new_zeros(*mask.shape, *out.shape[1:])
    full[mask] = out
    return full


class TrajectoryHooks(TaskHooks):
    """Adam + warmup / cosine, per-window rotations, and the squared error summed over agent
    steps (weighted by their global count)."""

    collate_fn = staticmethod(collate_windows)
    find_unused_parameters = True  # teacher forcing never feeds the last future step

    def __init__(
        self,
        model: nn.Module,
        recipe: TrajectoryRecipe,
        val_set: Dataset | None = None,
        device: str = "cpu",
        desc: str = "train",
    ) -> None:
        self.recipe, self.dtype = recipe, _dtype(model)
        self.angles: Tensor | None = None
        self.val_set, self.device, self.desc = val_set, device, desc
        if recipe.select_epoch and val_set is None:
            raise ValueError("select_epoch needs a validation split")
        self.select = "minus_ade" if recipe.select_epoch else None

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        recipe = self.recipe
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        recipe = self.recipe
        floor = recipe.min_lr / recipe.lr
        if recipe.schedule == "epoch":  # CosineAnnealingLR(T_max=epochs) stepped per epoch
            per_epoch = warmup_cosine(0, recipe.epochs, floor)
            return lambda step: per_epoch(step // steps_per_epoch)
        warmup = round(recipe.warmup_epochs * steps_per_epoch)
        return warmup_cosine(warmup, recipe.epochs * steps_per_epoch, floor)

    def start_epoch(self, dataset: Dataset, epoch: int, seed: int) -> None:
        super().start_epoch(dataset, epoch, seed)
        if self.recipe.rotate_degrees:
            self.angles = sample_angles(len(dataset), self.recipe.rotate_degrees, seed * 7919)

    def prepare(self, batch: Any, indices: list[int], device: torch.device) -> Any:
        obs, fut, mask = batch
        obs, fut = obs.to(device, self.dtype), fut.to(device, self.dtype)
        if self.angles is not None:
            angles = self.angles[indices].to(device)
            obs, fut = rotate_trajectories(obs, angles), rotate_trajectories(fut, angles)
        return obs, fut, mask.to(device)

    def count(self, batch: Any) -> int:
        _, fut, mask = batch
        per_step = 2 if self.recipe.loss_per == "coordinate" else 1
        return int(mask.sum()) * fut.shape[2] * per_step  # agent steps (or coordinates)

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        obs, fut, mask = batch
        sq_error = (predict(model, obs, mask, fut) - fut).pow(2).sum(-1)[mask]  # (N, pred_len)
        ade = sq_error.detach().sqrt().mean(-1).sum()
        return sq_error.sum(), {"ade_sum": ade, "agents": float(len(sq_error))}

    def summary(self, totals: dict[str, float]) -> dict[str, float]:
        return {"train_ade": totals["ade_sum"] / max(totals["agents"], 1)}

    def evaluate(self, model: nn.Module) -> dict[str, float] | None:
        """Clean validation ADE / FDE (rollout) when epochs are selected; lower ADE is better."""
        if self.select is None:
            return None
        spec = EvalSettings(eval_rot=0.0, sweep=())
        desc = f"{self.desc} val"
        metrics = evaluate_trajectory(model, self.val_set, spec, 0, self.device, desc, False)
        ade = metrics["metrics"]["ade"]
        return {"ade": ade, "fde": metrics["metrics"]["fde"], "minus_ade": -ade}


def train_trajectory(
    model: nn.Module,
    dataset: Dataset,
    recipe: TrajectoryRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    stop_after_epochs: int | None = None,
    desc: str = "train",
    fingerprint: Fingerprint | None = None,
    until_epoch: int | None = None,
    val_set: Dataset | None = None,
    best_checkpoint: str | Path | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam + cosine; resume from ``checkpoint`` when it exists.

    Returns the history, one record per epoch (loss, teacher-forced train ADE, learning rate,
    and with ``recipe.select_epoch`` the validation ADE / FDE of ``val_set``, the best epoch's
    weights written to ``best_checkpoint``).  ``stop_after_epochs`` ends this call after that
    many epochs (as if killed), to test resume.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the training set has no windows")
    hooks = TrajectoryHooks(model, recipe, val_set, device, desc)
    history, _ = fit(
        model,
        dataset,
        hooks,
        recipe,
        seed,
        checkpoint,
        device,
        desc,
        stop_after_epochs,
        fingerprint=fingerprint,
        best_checkpoint=best_checkpoint,
        until_epoch=until_epoch,
    )
    return history


@torch.no_grad()
def evaluate_trajectory(
    model: nn.Module,
    dataset: Dataset,
    spec: EvalSettings,
    seed: int,
    device: str = "cpu",
    desc: str = "evaluate",
    rotated: bool = True,
) -> dict[str, Any]:
    """Clean and rotated ADE / FDE (autoregressive rollout), combined scores and the
    equivariance error, plus the error against a fixed sweep of angles (docs/conventions.md §1).

    Each window gets its own angle, uniform in [-spec.eval_rot, +spec.eval_rot] degrees, drawn
    from ``seed`` (:func:`sample_angles`; the same on every rerun); all its agents share it.
    Returns ``{"metrics": {ade, fde, ade_sum, rot_ade, rot_fde, rot_ade_sum, combined_ade,
    combined_fde, combined_ade_sum, eq_error, eq_error_batches, count}, "angle_sweep":
    [{"angle", "eq_error", "ade", "fde"}, ...]}``; distances in metres, ``count`` = agent
    windows.  ``eq_error_batches`` is the reference's convention: the agent mean per batch of
    ``spec.batch_size`` windows, averaged over batches weighted by their windows.
    ``rotated=False`` computes the clean metrics only (model selection).
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the evaluation set has no windows")
    if spec.damp_border:
        raise ValueError("damp_border applies to rotated images, not to trajectories")
    model.to(device).eval()
    dtype = _dtype(model)
    loader = DataLoader(
        dataset, batch_size=spec.batch(EVAL_BATCH), shuffle=False, collate_fn=collate_windows
    )
    angles = sample_angles(len(dataset), spec.eval_rot, seed)
    meter = TrajectoryMeter()
    sweep = [TrajectoryMeter() for _ in spec.sweep]
    batch_eq = 0.0
    at = 0
    with parametrize.cached():  # project each soft weight once, not once per rollout step
        for obs, fut, mask in tqdm(loader, desc=desc, leave=False):
            obs, fut, mask = obs.to(device, dtype), fut.to(device, dtype), mask.to(device)
            batch_angles = angles[at : at + len(obs)].to(device)
            at += len(obs)
            pred = predict(model, obs, mask)
            if not rotated:
                meter.update(pred, fut, mask)
                continue
            rot_pred = predict(model, rotate_trajectories(obs, batch_angles), mask)
            rot_fut = rotate_trajectories(fut, batch_angles)
            meter.update(
                pred, fut, mask, rot_pred=rot_pred, rot_target=rot_fut, angles_deg=batch_angles
            )
            eq = displacement_errors(rotate_trajectories(pred, batch_angles), rot_pred)[mask]
            batch_eq += float(eq.double().mean(-1).mean()) * len(obs)
            for meter_at, angle in zip(sweep, spec.sweep, strict=True):
                meter_at.update(
                    pred,
                    fut,
                    mask,
                    rot_pred=predict(model, rotate_trajectories(obs, float(angle)), mask),
                    rot_target=rotate_trajectories(fut, float(angle)),
                    angles_deg=float(angle),
                )
    metrics = meter.compute()
    if rotated:
        metrics["eq_error_batches"] = batch_eq / len(dataset)
    angle_sweep = []
    for angle, meter_at in zip(spec.sweep, sweep, strict=True):
        values = meter_at.compute()
        angle_sweep.append(
            {
                "angle": float(angle),
                "eq_error": values["eq_error"],
                "ade": values["rot_ade"],
                "fde": values["rot_fde"],
            }
        )
    return {"metrics": metrics, "angle_sweep": angle_sweep}
