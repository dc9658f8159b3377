"""Trajectory metrics on clean and rotated inputs (docs/conventions.md §1), in metres.

For predictions p and ground truth y of shape (..., T, 2) (T predicted steps), per agent:

* ADE = (1/T) sum_t ||p_t - y_t||, FDE = ||p_T - y_T||, averaged over agents;
* ``ade_sum`` = sum_t ||p_t - y_t|| averaged over agents (= T * ADE): what the reference code
  reports as "ADE";
* rotated versions: observations and ground truth rotated about the origin by a per-sample angle
  R (counter-clockwise, uniform in [-eval_rot, +eval_rot] degrees,
  :func:`softeq.transforms.sample_angles`), the model run on the rotated observations, errors
  against the rotated ground truth;
* combined = (clean + rotated) / 2 (arithmetic mean, as the paper does for ADE / FDE);
* equivariance error = mean over agents and steps of ||R f(x)_t - f(R x)_t|| (metres).

Masks select the real agents of zero-padded batches (:func:`softeq.data.eth_ucy.collate_windows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from softeq.transforms import rotate_trajectories

__all__ = [
    "TrajectoryMeter",
    "ade",
    "ade_sum",
    "displacement_errors",
    "equivariance_error",
    "fde",
]


def displacement_errors(pred: Tensor, target: Tensor) -> Tensor:
    """||pred_t - target_t|| per step: (..., T, 2) -> (..., T)."""
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(
            f"expected matching (..., T, 2) tensors, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    return (pred - target).norm(dim=-1)


def _masked_mean(values: Tensor, mask: Tensor | None) -> float:
    """Mean of per-agent ``values`` (leading dims) over the agents where ``mask`` is True."""
    if mask is None:
        return float(values.double().mean()) if values.numel() else math.nan
    mask = mask.to(values.device).bool()
    if mask.shape != values.shape:
        raise ValueError(f"mask {tuple(mask.shape)} does not match agents {tuple(values.shape)}")
    count = int(mask.sum())
    return float(values.double()[mask].sum() / count) if count else math.nan


def ade(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Average displacement error: mean over predicted steps and agents (metres)."""
    return _masked_mean(displacement_errors(pred, target).mean(dim=-1), mask)


def fde(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Final displacement error: error at the last predicted step, mean over agents (metres)."""
    return _masked_mean(displacement_errors(pred, target)[..., -1], mask)


def ade_sum(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """Error summed over predicted steps, mean over agents: T x ADE (the reference code's "ADE")."""
    return _masked_mean(displacement_errors(pred, target).sum(dim=-1), mask)


def equivariance_error(
    pred: Tensor,
    rot_pred: Tensor,
    angles_deg: Tensor | Sequence[float] | float,
    mask: Tensor | None = None,
) -> float:
    """mean ||R f(x) - f(R x)|| over steps and agents, with ``pred`` = f(x) and ``rot_pred`` =
    f(R x), R the rotation by ``angles_deg`` (one per sample of the leading batch dimension)."""
    return _masked_mean(
        displacement_errors(rotate_trajectories(pred, angles_deg), rot_pred).mean(dim=-1), mask
    )


class TrajectoryMeter:
    """Accumulates clean, rotated and equivariance errors over batches; ``compute()`` summarises.

    Only sums and counts are kept (float64), so memory does not grow with the split and the result
    is the mean over every agent seen, however the batches were cut.
    """

    _KEYS = ("ade", "fde", "ade_sum", "rot_ade", "rot_fde", "rot_ade_sum", "eq_error")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.count = 0
        self.rot_count = 0
        self.sums = dict.fromkeys(self._KEYS, 0.0)

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        *,
        rot_pred: Tensor | None = None,
        rot_target: Tensor | None = None,
        angles_deg: Tensor | Sequence[float] | float | None = None,
    ) -> None:
        """Add a batch: predictions and ground truth (..., T, 2), ``mask`` over the leading
        (agent) dims; optionally the prediction on rotated inputs ``rot_pred`` = f(R x), the
        rotated ground truth ``rot_target`` = R y and the angles (degrees, one per sample)."""
        keep = (
            torch.ones(pred.shape[:-2], dtype=torch.bool, device=pred.device)
            if mask is None
            else mask.to(pred.device).bool()
        )
        if keep.shape != pred.shape[:-2]:
            raise ValueError(f"mask {tuple(keep.shape)} does not match {tuple(pred.shape[:-2])}")
        n = int(keep.sum())
        errors = displacement_errors(pred, target).double()[keep]  # (n, T)
        self.count += n
        self.sums["ade"] += float(errors.mean(dim=-1).sum())
        self.sums["fde"] += float(errors[:, -1].sum())
        self.sums["ade_sum"] += float(errors.sum())
        given = [v is not None for v in (rot_pred, rot_target, angles_deg)]
        if any(given) and not all(given):
            raise ValueError("rotated metrics need rot_pred, rot_target and angles_deg together")
        if not all(given):
            return
        rot_errors = displacement_errors(rot_pred, rot_target).double()[keep]
        eq = displacement_errors(rotate_trajectories(pred, angles_deg), rot_pred).double()[keep]
        self.rot_count += n
        self.sums["rot_ade"] += float(rot_errors.mean(dim=-1).sum())
        self.sums["rot_fde"] += float(rot_errors[:, -1].sum())
        self.sums["rot_ade_sum"] += float(rot_errors.sum())
        self.sums["eq_error"] += float(eq.mean(dim=-1).sum())

    def compute(self) -> dict[str, float]:
        """ade, fde, ade_sum (and, when rotated batches were given, rot_*, combined_*, eq_error)
        in metres; ``count`` is the number of agents."""
        if self.count == 0:
            raise ValueError("no agents accumulated")
        out = {k: self.sums[k] / self.count for k in ("ade", "fde", "ade_sum")}
        if self.rot_count:
            for key in ("rot_ade", "rot_fde", "rot_ade_sum", "eq_error"):
                out[key] = self.sums[key] / self.rot_count
            for key in ("ade", "fde", "ade_sum"):
                out[f"combined_{key}"] = (out[key] + out[f"rot_{key}"]) / 2
        out["count"] = self.count
        return out
