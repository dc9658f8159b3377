"""Atomic writes and weights-only checkpoints: a killed job never leaves a half-written file."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch

from softeq.io import atomic_write, write_json

__all__ = [
    "CorruptCheckpointError",
    "atomic_write",
    "load_checkpoint",
    "save_checkpoint",
    "write_json",
]


class CorruptCheckpointError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, or holding objects a
    weights-only load refuses); the message names the file and how to clear it."""

    def __init__(self, path: str | Path, error: BaseException) -> None:
        self.path = Path(path)
        super().__init__(
            f"{path}: cannot read checkpoint ({type(error).__name__}: {error}); the file is "
            f"truncated or corrupt: remove it with `rm {shlex.quote(str(path))}` and rerun "
            "(the workflow then rebuilds it)"
        )


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save ``state`` (tensors, numbers, strings, containers of them) atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: no arbitrary objects are unpickled.

    A file that exists but does not load raises :class:`CorruptCheckpointError` (naming the file
    and the ``rm`` that clears it); a missing or unreadable file raises the ``OSError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # corrupt, truncated, or holding objects we refuse to unpickle
        raise CorruptCheckpointError(path, error) from error
    if not isinstance(state, dict):
        raise CorruptCheckpointError(path, TypeError(f"holds a {type(state).__name__}, not a dict"))
    return state
