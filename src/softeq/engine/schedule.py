"""Training plumbing shared by the task loops: the learning-rate schedule and resumable state."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.engine.checkpoint import CorruptCheckpointError, load_checkpoint, save_checkpoint
from softeq.engine.fingerprint import Fingerprint

__all__ = [
    "epoch_cosine",
    "epoch_seed",
    "epochs_to_run",
    "resume",
    "save_state",
    "warmup_cosine",
]


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


def epoch_cosine(
    warmup: int, total: int, warmup_floor: float = 0.0, floor: float = 0.0
) -> Callable[[int], float]:
    """LR factor per *epoch* as timm's ``CosineLRScheduler`` stepped once an epoch (no warmup
    prefix): linear from ``warmup_floor`` over ``warmup`` epochs, then the cosine of the whole
    run, ``floor + (1 - floor) (1 + cos(pi e / total)) / 2`` (the reference's ImageNet
    schedule, docs/fidelity.md)."""

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return warmup_floor + epoch * (1 - warmup_floor) / warmup
        progress = min(epoch / max(total, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of every random draw of one epoch: the same on resume."""
    return seed * 100_003 + epoch


def epochs_to_run(
    epochs: int, start: int, stop_after: int | None, until: int | None = None
) -> range:
    """Epochs left from ``start``: up to epoch ``until`` of the ``epochs``-long schedule (a
    successive-halving rung, docs/selection.md) or its end; ``stop_after`` ends the call after
    that many, as if killed (tests of resume)."""
    end = epochs if until is None else min(epochs, until)
    return range(start, end if stop_after is None else min(end, start + stop_after))


def resume(
    checkpoint: str | Path | None,
    fingerprint: Fingerprint,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    restart: bool = True,
    say: Callable[[str], None] = print,
) -> tuple[list[dict], int, dict[str, Any]]:
    """Restore model, optimizer and scheduler from ``checkpoint`` if it was written for
    ``fingerprint``'s inputs.

    Returns (history, first epoch to run, the whole state for extras); ([], 0, {}) to start from
    scratch.  A checkpoint of other inputs is never resumed: with ``restart`` the run starts over
    (``say`` names the changed fields; the first epoch's save replaces the file), without it the
    checkpoint is refused.  An unreadable checkpoint (truncated, corrupt) is only a cache of a run
    that can be redone bit for bit, so it is always started over, loudly (docs/conventions.md §3).
    """
    if checkpoint is None or not Path(checkpoint).exists():
        return [], 0, {}
    try:
        state = load_checkpoint(checkpoint)
    except CorruptCheckpointError as error:
        say(f"WARNING: {error}\nWARNING: checkpoint {checkpoint} is unreadable: starting over")
        return [], 0, {}
    changed = fingerprint.changed(state.get("fingerprint"))
    if changed and not restart:
        raise ValueError(
            f"{checkpoint}: written for other inputs (changed: {', '.join(changed)}), e.g. by "
            f"another recipe or seed; delete it (rm {shlex.quote(str(checkpoint))}) to start over"
        )
    if changed:
        say(
            f"checkpoint {checkpoint} was written for other inputs ({', '.join(changed)}): "
            "starting over"
        )
        return [], 0, {}
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    say(f"checkpoint {checkpoint}: same inputs, resuming after epoch {int(state['epoch']) + 1}")
    return list(state["history"]), int(state["epoch"]) + 1, state


def save_state(
    checkpoint: str | Path | None,
    fingerprint: Fingerprint,
    epoch: int,
    history: list[dict],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    **extra: Any,
) -> None:
    """Write the resumable state after ``epoch`` (atomically), bound to ``fingerprint``;
    nothing without a checkpoint."""
    if checkpoint is None:
        return
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "history": history,
        "fingerprint": fingerprint.to_dict(),
        **extra,
    }
    save_checkpoint(state, checkpoint)
