"""Successive-halving rungs of a fine-tune (docs/selection.md).

A rung trains a candidate up to epoch ``--until-epoch`` of the full schedule (the learning rate
follows the whole schedule) and hands its training state on with ``--state-out``; the next rung
starts from that state (``--resume-from``), so no epoch is trained twice, and the last rung ends
bit-identical to a fine-tune that ran the whole schedule in one go.  The state bundles the
resumable checkpoint and the best-epoch weights of ``select_epoch`` recipes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from softeq.engine.checkpoint import CorruptCheckpointError, load_checkpoint, save_checkpoint
from softeq.engine.distributed import Distributed

__all__ = ["best_epoch_file", "check_rung_args", "finish_rung", "start_rung"]


def best_epoch_file(out: str | Path) -> Path:
    """Where a fine-tune keeps its best held-out epoch's weights: beside ``--out``."""
    return Path(f"{out}.best")


def check_rung_args(args: argparse.Namespace) -> None:
    """``--resume-from`` and ``--state-out`` need ``--checkpoint``; a state needs an epoch."""
    until = getattr(args, "until_epoch", None)
    if until is not None and until < 0:
        raise SystemExit(f"--until-epoch {until}: must be >= 0")
    for flag in ("resume_from", "state_out"):
        if getattr(args, flag, None) is not None and args.checkpoint is None:
            raise SystemExit(f"--{flag.replace('_', '-')} needs --checkpoint")
    if getattr(args, "state_out", None) is not None and until == 0:
        raise SystemExit(
            "--state-out with --until-epoch 0: no epoch is trained, no state to hand on"
        )


def _holds_progress(checkpoint: Path, epoch: int, fingerprint: object) -> bool:
    """Whether ``checkpoint`` continues the handed-on state: the same inputs, at ``epoch`` or
    later (a rung killed and rerun resumes its own progress)."""
    if not checkpoint.is_file():
        return False
    try:
        state = load_checkpoint(checkpoint)
    except CorruptCheckpointError:
        return False
    return state.get("fingerprint") == fingerprint and int(state["epoch"]) >= epoch


def start_rung(args: argparse.Namespace, device: str) -> None:
    """Before training: seed ``--checkpoint`` and the best-epoch file from ``--resume-from``,
    unless the checkpoint already holds this rung's progress."""
    if getattr(args, "resume_from", None) is None:
        return
    ctx = Distributed.from_env(device)
    if ctx.is_main:
        try:
            state = load_checkpoint(args.resume_from)
            handed = state["checkpoint"]
        except (OSError, KeyError, CorruptCheckpointError) as error:
            raise SystemExit(
                f"--resume-from {args.resume_from}: not a rung state ({error})"
            ) from error
        checkpoint = Path(args.checkpoint)
        if not _holds_progress(checkpoint, int(handed["epoch"]), handed.get("fingerprint")):
            save_checkpoint(handed, checkpoint)
            best = best_epoch_file(args.out)
            if state.get("best") is not None:
                save_checkpoint(state["best"], best)
            else:
                best.unlink(missing_ok=True)
            print(f"rung: continuing {args.resume_from} after epoch {int(handed['epoch']) + 1}")
    ctx.barrier()


def finish_rung(args: argparse.Namespace, device: str) -> None:
    """After training: write ``--state-out`` (the checkpoint and the best-epoch weights)."""
    if getattr(args, "state_out", None) is None or not Distributed.from_env(device).is_main:
        return
    best = best_epoch_file(args.out)
    state = {
        "checkpoint": load_checkpoint(args.checkpoint),
        "best": load_checkpoint(best) if best.is_file() else None,
    }
    save_checkpoint(state, args.state_out)
