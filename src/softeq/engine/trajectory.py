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
from softeq.metrics.trajectory import TrajectoryMeter
from softeq.settings import at_least, positive
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

    def check(self) -> None:
        positive(self, "lr")
        for key in ("min_lr", "weight_decay", "warmup_epochs", "rotate_degrees"):
            at_least(self, key, 0)


def _dtype(model: nn.Module) -> torch.dtype:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _agents(obs: Tensor, fut: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Padded windows (B, A, T, 2) -> the real agents (N, T, 2)."""
    return obs[mask], fut[mask]


class TrajectoryHooks(TaskHooks):
    """Adam + warmup / cosine, per-window rotations, and the squared error summed over agent
    steps (weighted by their global count)."""

    collate_fn = staticmethod(collate_windows)
    find_unused_parameters = True  # teacher forcing never feeds the last future step

    def __init__(self, model: nn.Module, recipe: TrajectoryRecipe) -> None:
        self.recipe, self.dtype = recipe, _dtype(model)
        self.angles: Tensor | None = None

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        recipe = self.recipe
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        recipe = self.recipe
        warmup = round(recipe.warmup_epochs * steps_per_epoch)
        return warmup_cosine(warmup, recipe.epochs * steps_per_epoch, recipe.min_lr / recipe.lr)

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
        return _agents(obs, fut, mask.to(device))

    def count(self, batch: Any) -> int:
        _, fut = batch
        return fut.shape[0] * fut.shape[1]  # agent steps

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        obs, fut = batch
        sq_error = (model(obs, fut) - fut).pow(2).sum(-1)  # (N, pred_len)
        ade = sq_error.detach().sqrt().mean(-1).sum()
        return sq_error.sum(), {"ade_sum": ade, "agents": float(len(obs))}

    def summary(self, totals: dict[str, float]) -> dict[str, float]:
        return {"train_ade": totals["ade_sum"] / max(totals["agents"], 1)}


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
) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam + cosine; resume from ``checkpoint`` when it exists.

    Returns the history, one record per epoch (loss, teacher-forced train ADE, learning rate).
    ``stop_after_epochs`` ends this call after that many epochs (as if killed), to test resume.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the training set has no windows")
    hooks = TrajectoryHooks(model, recipe)
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
) -> dict[str, Any]:
    """Clean and rotated ADE / FDE (autoregressive rollout), combined scores and the
    equivariance error, plus the error against a fixed sweep of angles (docs/conventions.md §1).

    Each window gets its own angle, uniform in [-spec.eval_rot, +spec.eval_rot] degrees, drawn
    from ``seed`` (:func:`sample_angles`; the same on every rerun); all its agents share it.
    Returns ``{"metrics": {ade, fde, ade_sum, rot_ade, rot_fde, rot_ade_sum, combined_ade,
    combined_fde, combined_ade_sum, eq_error, count}, "angle_sweep": [{"angle", "eq_error",
    "ade", "fde"}, ...]}``; distances in metres, ``count`` = agent windows.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the evaluation set has no windows")
    model.to(device).eval()
    dtype = _dtype(model)
    loader = DataLoader(
        dataset, batch_size=spec.batch(EVAL_BATCH), shuffle=False, collate_fn=collate_windows
    )
    angles = sample_angles(len(dataset), spec.eval_rot, seed)
    meter = TrajectoryMeter()
    sweep = [TrajectoryMeter() for _ in spec.sweep]
    at = 0
    with parametrize.cached():  # project each soft weight once, not once per rollout step
        for obs, fut, mask in tqdm(loader, desc=desc, leave=False):
            obs, fut, mask = obs.to(device, dtype), fut.to(device, dtype), mask.to(device)
            batch_angles = angles[at : at + len(obs)].to(device)
            at += len(obs)
            window = torch.arange(len(obs), device=device)[:, None].expand_as(mask)[mask]
            clean_obs, clean_fut = _agents(obs, fut, mask)
            pred = model(clean_obs)
            per_agent = batch_angles[window]
            rot_obs = rotate_trajectories(clean_obs, per_agent)
            rot_fut = rotate_trajectories(clean_fut, per_agent)
            meter.update(
                pred, clean_fut, rot_pred=model(rot_obs), rot_target=rot_fut, angles_deg=per_agent
            )
            for meter_at, angle in zip(sweep, spec.sweep, strict=True):
                turned_obs = rotate_trajectories(clean_obs, float(angle))
                turned_fut = rotate_trajectories(clean_fut, float(angle))
                meter_at.update(
                    pred,
                    clean_fut,
                    rot_pred=model(turned_obs),
                    rot_target=turned_fut,
                    angles_deg=float(angle),
                )
    metrics = meter.compute()
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
