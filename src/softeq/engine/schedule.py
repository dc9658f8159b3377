"""Training plumbing shared by the task loops: the learning-rate schedule and resumable state."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.engine.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["epoch_seed", "epochs_to_run", "resume", "save_state", "warmup_cosine"]


def warmup_cosine(warmup: int, total: int, floor: float = 0.0) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warmup over ``warmup`` steps, then a cosine from 1 to
    ``floor`` at step ``total``."""
    warmup = max(0, min(warmup, total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of every random draw of one epoch: the same on resume."""
    return seed * 100_003 + epoch


def epochs_to_run(epochs: int, start: int, stop_after: int | None) -> range:
    """Epochs left from ``start``; ``stop_after`` ends early, as if killed (tests of resume)."""
    return range(start, epochs if stop_after is None else min(epochs, start + stop_after))


def resume(
    checkpoint: str | Path | None,
    recipe: Any,
    seed: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> tuple[list[dict], int, dict[str, Any]]:
    """Restore model, optimizer and scheduler from ``checkpoint`` if it exists.

    Returns (history, first epoch to run, the whole state for extras); a checkpoint written by
    another recipe or seed is refused rather than silently mixed.
    """
    if checkpoint is None or not Path(checkpoint).exists():
        return [], 0, {}
    state = load_checkpoint(checkpoint)
    if state.get("recipe") != asdict(recipe) or state.get("seed") != seed:
        raise ValueError(f"{checkpoint}: written by another recipe or seed; delete it")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return list(state["history"]), int(state["epoch"]) + 1, state


def save_state(
    checkpoint: str | Path | None,
    recipe: Any,
    seed: int,
    epoch: int,
    history: list[dict],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    **extra: Any,
) -> None:
    """Write the resumable state after ``epoch`` (atomically); nothing without a checkpoint."""
    if checkpoint is None:
        return
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "recipe": asdict(recipe),
        "seed": seed,
        **extra,
    }
    save_checkpoint(state, checkpoint)
