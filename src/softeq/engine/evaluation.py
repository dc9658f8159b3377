"""The evaluation settings of every task (config: ``evaluate.<task>``) and the one default sweep.

Rotated evaluation draws one angle per sample, uniform in [-eval_rot, +eval_rot] degrees; the
sweep evaluates every sample at each fixed angle (docs/conventions.md §1, angle sweep).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from softeq.settings import SettingError, at_least, check_types, from_dict

__all__ = ["DEFAULT_SWEEP", "EvalSettings"]

# Multiples of 45 degrees (exact for C4 / C8 at b = 0), the +-15 / 30 / 60 in between, and 0.
DEFAULT_SWEEP: tuple[float, ...] = (
    -180.0,
    -135.0,
    -90.0,
    -60.0,
    -45.0,
    -30.0,
    -15.0,
    0.0,
    15.0,
    30.0,
    45.0,
    60.0,
    90.0,
    135.0,
    180.0,
)


@dataclass(frozen=True)
class EvalSettings:
    """Rotated-evaluation range, fixed sweep angles and evaluation batch size.

    ``batch_size`` None means the task's own default (each evaluate function passes it to
    :meth:`batch`: 256 images for classification, 16 for segmentation, 256 windows for
    trajectories), since one number cannot suit a ViT-B at 518 px and a trajectory window alike.
    ``damp_border`` rotates the images of the rotated evaluation as the reference code does,
    torchvision's ``rotate(..., fill=0)`` on the normalised images, whose border pixels are
    damped twice (:func:`softeq.transforms.rotate_images`, docs/fidelity.md).
    """

    eval_rot: float = 30.0
    sweep: tuple[float, ...] = DEFAULT_SWEEP
    batch_size: int | None = None
    damp_border: bool = False  # rotate images as torchvision's fill does (the reference)

    def __post_init__(self) -> None:
        if isinstance(self.sweep, list):
            object.__setattr__(self, "sweep", tuple(self.sweep))
        check_types(self)
        at_least(self, "eval_rot", 0)
        if self.eval_rot > 180:
            raise SettingError("eval_rot", f"must be <= 180, got {self.eval_rot!r}")
        at_least(self, "batch_size", 1)

    def batch(self, default: int) -> int:
        """The evaluation batch size: the configured one, else the task's ``default``."""
        return default if self.batch_size is None else self.batch_size

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "evaluate") -> EvalSettings:
        """Settings of a config mapping; unknown keys, wrong types and ranges name the key."""
        return from_dict(cls, values, where, tuples=("sweep",))
