"""What every training recipe shares (epochs, global batch, accumulation, clipping), and the
validation of types and ranges that names the bad key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from softeq.settings import at_least, check_types, from_dict

__all__ = ["TrainRecipe"]


@dataclass(frozen=True)
class TrainRecipe:
    """The keys :func:`softeq.engine.loop.fit` reads; each task's recipe extends it (and may
    change the defaults).

    ``batch_size`` is the global batch per optimizer step: split over the DDP processes and the
    ``grad_accum`` micro-batches, so a run on 1 or N processes takes the same steps.
    """

    epochs: int = 1
    batch_size: int = 32
    grad_accum: int = 1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    min_epochs: ClassVar[int] = 1  # a task that can skip training (epochs 0) lowers it

    def __post_init__(self) -> None:
        check_types(self)
        at_least(self, "epochs", self.min_epochs)
        at_least(self, "batch_size", 1)
        at_least(self, "grad_accum", 1)
        at_least(self, "grad_clip", 0)
        self.check()

    def check(self) -> None:
        """Task-specific range checks (raise :class:`softeq.settings.SettingError`)."""

    @property
    def bf16(self) -> bool:
        """Whether the forward pass runs under bf16 autocast."""
        return False

    @property
    def ema(self) -> float | None:
        """The decay of an exponential moving average of the weights (None: no EMA)."""
        return None

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "recipe") -> Any:
        """The recipe of a config mapping; unknown keys, wrong types and ranges name the key."""
        return from_dict(cls, values, where)
