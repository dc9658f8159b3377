"""Atomic writes and weights-only checkpoints: a killed job never leaves a half-written file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from softeq.io import atomic_write, write_json

__all__ = ["atomic_write", "load_checkpoint", "save_checkpoint", "write_json"]


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save ``state`` (tensors, numbers, strings, containers of them) atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: no arbitrary objects are unpickled."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, or holding objects we refuse to unpickle
        raise ValueError(f"{path}: cannot read checkpoint ({error})") from error
