"""Trajectories: training with teacher forcing and rotation augmentation, checkpoint/resume, and
clean / rotated / equivariance evaluation with autoregressive rollout.

Training is resumable and reproducible exactly like :mod:`softeq.engine.classification`: after
each epoch an atomic checkpoint holds the model, optimizer and scheduler; the window order, the
augmentation angles and the dropout draws of epoch e come from generators seeded by (seed, e), so
a run stopped and resumed ends with the same weights as one that was not.

Batches are windows (:func:`softeq.data.eth_ucy.collate_windows`); every real agent of a window
is one sample of the per-agent model.  Augmentation rotates each window (observations and future
together) about the world origin by its own angle, uniform in [-rotate_degrees, +rotate_degrees].
The loss is the mean squared L2 error of the teacher-forced one-step predictions of the future
positions (metres^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from softeq.data.eth_ucy import collate_windows
from softeq.engine.schedule import epoch_seed as epoch_seed_of
from softeq.engine.schedule import epochs_to_run, resume, save_state, warmup_cosine
from softeq.metrics.trajectory import TrajectoryMeter
from softeq.settings import from_dict
from softeq.transforms import rotate_trajectories, sample_angles

__all__ = [
    "DEFAULT_SWEEP",
    "TrajectoryRecipe",
    "evaluate_trajectory",
    "train_trajectory",
]

DEFAULT_SWEEP = (
    -180.0,
    -135.0,
    -90.0,
    -45.0,
    -30.0,
    -15.0,
    0.0,
    15.0,
    30.0,
    45.0,
    90.0,
    135.0,
    180.0,
)


@dataclass(frozen=True)
class TrajectoryRecipe:
    """Training hyper-parameters (config: ``finetune`` for trajectories; PAPER.md defaults)."""

    epochs: int = 100
    batch_size: int = 128  # windows per batch
    lr: float = 5e-4
    min_lr: float = 0.0
    weight_decay: float = 1e-5  # Adam's L2 penalty (not AdamW's decoupled decay)
    warmup_epochs: float = 0.0
    rotate_degrees: float = 30.0  # augmentation: uniform random rotation about the origin
    grad_clip: float = 1.0  # 0 disables

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> TrajectoryRecipe:
        return from_dict(cls, values, where)


def _dtype(model: nn.Module) -> torch.dtype:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _agents(obs: Tensor, fut: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Padded windows (B, A, T, 2) -> the real agents (N, T, 2)."""
    return obs[mask], fut[mask]


def train_trajectory(
    model: nn.Module,
    dataset: Dataset,
    recipe: TrajectoryRecipe,
    seed: int,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    stop_after_epochs: int | None = None,
    desc: str = "train",
) -> list[dict[str, float]]:
    """Train ``model`` in place with Adam + cosine; resume from ``checkpoint`` when it exists.

    Returns the history, one record per epoch (loss, teacher-forced train ADE, learning rate).
    ``stop_after_epochs`` ends this call after that many epochs (as if killed), to test resume.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the training set has no windows")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    model.to(device)
    steps_per_epoch = math.ceil(len(dataset) / recipe.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup = round(recipe.warmup_epochs * steps_per_epoch)
    floor = recipe.min_lr / recipe.lr
    schedule = warmup_cosine(warmup, recipe.epochs * steps_per_epoch, floor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history, start, _ = resume(checkpoint, recipe, seed, model, optimizer, scheduler)
    for epoch in epochs_to_run(recipe.epochs, start, stop_after_epochs):
        history.append(
            _train_epoch(model, dataset, recipe, seed, epoch, optimizer, scheduler, device, desc)
        )
        save_state(checkpoint, recipe, seed, epoch, history, model, optimizer, scheduler)
    return history


def _train_epoch(
    model, dataset, recipe, seed, epoch, optimizer, scheduler, device, desc
) -> dict[str, float]:
    model.train()
    epoch_seed = epoch_seed_of(seed, epoch)
    torch.manual_seed(epoch_seed)  # dropout draws: reproducible per epoch on resume
    order = torch.Generator().manual_seed(epoch_seed)
    loader = DataLoader(
        dataset,
        batch_size=recipe.batch_size,
        shuffle=True,
        generator=order,
        collate_fn=collate_windows,
    )
    dtype = _dtype(model)
    total_loss, total_ade, count = 0.0, 0.0, 0
    bar = tqdm(loader, desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}", leave=False)
    for step, (obs, fut, mask) in enumerate(bar):
        obs, fut = obs.to(device, dtype), fut.to(device, dtype)
        if recipe.rotate_degrees:
            angles = sample_angles(len(obs), recipe.rotate_degrees, epoch_seed * 7919 + step)
            obs, fut = rotate_trajectories(obs, angles), rotate_trajectories(fut, angles)
        obs, fut = _agents(obs, fut, mask.to(device))
        pred = model(obs, fut)
        sq_error = (pred - fut).pow(2).sum(-1)  # (N, pred_len)
        loss = sq_error.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(obs)
        total_ade += float(sq_error.detach().sqrt().mean(-1).sum())
        count += len(obs)
        bar.set_postfix(loss=f"{total_loss / count:.4f}")
    return {
        "epoch": epoch + 1,
        "loss": total_loss / count,
        "train_ade": total_ade / count,
        "lr": scheduler.get_last_lr()[0],
    }


@torch.no_grad()
def evaluate_trajectory(
    model: nn.Module,
    dataset: Dataset,
    eval_rot: float,
    seed: int,
    sweep_angles: Sequence[float] = DEFAULT_SWEEP,
    batch_size: int = 256,
    device: str = "cpu",
    desc: str = "evaluate",
) -> dict[str, Any]:
    """Clean and rotated ADE / FDE (autoregressive rollout), combined scores and the
    equivariance error (DESIGN 4), plus the error against a fixed sweep of angles.

    Each window gets its own angle, uniform in [-eval_rot, +eval_rot] degrees, drawn from
    ``seed`` (:func:`sample_angles`; the same on every rerun); all its agents share it.
    Returns ``{"metrics": {ade, fde, ade_sum, rot_ade, rot_fde, rot_ade_sum, combined_ade,
    combined_fde, combined_ade_sum, eq_error, count}, "angle_sweep": [{"angle", "eq_error",
    "ade", "fde"}, ...]}``; distances in metres, ``count`` = agent windows.
    """
    if len(dataset) == 0:
        raise ValueError(f"{desc}: the evaluation set has no windows")
    model.to(device).eval()
    dtype = _dtype(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_windows)
    angles = sample_angles(len(dataset), eval_rot, seed)
    meter = TrajectoryMeter()
    sweep = [TrajectoryMeter() for _ in sweep_angles]
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
            for meter_at, angle in zip(sweep, sweep_angles, strict=True):
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
    for angle, meter_at in zip(sweep_angles, sweep, strict=True):
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
