"""Segmentation metrics on clean and rotated inputs (docs/conventions.md §1).

* mIoU from one confusion matrix accumulated over the whole split (not a mean of per-image
  scores), pixels labelled ``ignore_index`` (255, VOC's boundary / void) left out, averaged over
  the classes present (union > 0, i.e. in the labels or in the predictions): the definition of
  mmseg's ``IoUMetric`` and of torchmetrics' ``MulticlassJaccardIndex(average="macro")``; the
  tests check both to 1e-6.
* rotated mIoU: the same on the rotated image and its nearest-rotated mask (fill 255, so pixels
  rotated in from outside the frame are ignored); ``combined = sqrt(mIoU * rot_mIoU)``.
* equivariance error: mean per-pixel KL(R(softmax f(x)) || softmax f(Rx)) over the pixels whose
  rotation reads only from inside the frame (:func:`softeq.transforms.inside_mask`).
* ``eq_error_reference``: the reference code's convention beside it
  (:func:`reference_equivariance_error`): the logits are rotated, not the probabilities, the mask
  is a nearest-rotated image of ones, and the per-pixel mean is taken per evaluation batch, then
  averaged over batches weighted by their images.

The confusion matrix lives on the device of the predictions and is filled by one
``torch.bincount`` per batch: no Python loop over classes or images, no host copy per batch.
Scores are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from softeq.metrics.equivariance import kl_divergence
from softeq.transforms import inside_mask, rotate_images

__all__ = [
    "IGNORE_INDEX",
    "SegmentationMeter",
    "confusion_matrix",
    "iou_from_confusion",
    "mean_iou",
    "pixel_equivariance_error",
    "reference_equivariance_error",
]

IGNORE_INDEX = 255


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """(K, K) int64 counts, rows = target class, columns = predicted class, on ``pred``'s device.

    ``pred`` and ``target`` are integer label maps of one shape; pixels whose target is
    ``ignore_index`` are dropped. Targets outside [0, K) other than ``ignore_index`` are an error
    (a wrong ``num_classes`` or an RGB mask read as labels), checked without a host sync per class.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    pred = pred.reshape(-1).long()
    target = target.to(pred.device).reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    bad = (target < 0) | (target >= num_classes) | (pred < 0) | (pred >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"labels outside [0, {num_classes}) that are not the ignore index {ignore_index}: "
            f"{torch.unique(torch.cat([target[bad], pred[bad]])).tolist()[:10]}"
        )
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (float64, NaN where the class is absent: union = 0)."""
    cm = confusion.double()
    intersection = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.nan)


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes present (union > 0); NaN if no pixel was counted."""
    iou = iou_from_confusion(confusion)
    present = ~torch.isnan(iou)
    if not bool(present.any()):
        return math.nan
    return float(iou[present].mean())


def pixel_equivariance_error(
    logits: torch.Tensor,
    rot_logits: torch.Tensor,
    angles_deg: torch.Tensor | Sequence[float] | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel KL(R(softmax f(x)) || softmax f(Rx)) and the inside-the-frame mask.

    ``logits`` = f(x) and ``rot_logits`` = f(Rx), both (N, K, H, W). The clean class probabilities
    are rotated (bilinear, like the images) and compared with the prediction on the rotated
    input. Returns ``(kl, inside)``: kl (N, H, W) float, inside (N, H, W) bool; only pixels where
    ``inside`` holds are comparable (elsewhere R(softmax f(x)) reads the zero fill).
    """
    if logits.shape != rot_logits.shape or logits.ndim != 4:
        raise ValueError(
            f"expected two (N, K, H, W) logits of one shape, got {tuple(logits.shape)} and "
            f"{tuple(rot_logits.shape)}"
        )
    p = rotate_images(F.softmax(logits.float(), dim=1), angles_deg, mode="bilinear", fill=0.0)
    kl = kl_divergence(p, rot_logits.float(), dim=1, probs_p=True)
    inside = inside_mask(logits.shape, angles_deg, device=logits.device)[:, 0]
    return kl, inside


def reference_equivariance_error(
    logits: torch.Tensor,
    rot_logits: torch.Tensor,
    angles_deg: torch.Tensor | Sequence[float] | float,
) -> torch.Tensor:
    """One batch's equivariance error as the reference code computes it (docs/conventions.md §1).

    The clean logits f(x) (N, K, H, W) are rotated bilinearly with torchvision's ``fill=0``
    (which multiplies the zero-padded bilinear result once more by the rotated image of ones, so
    border pixels are damped twice), then KL(softmax R f(x) || softmax f(Rx)) per pixel; the
    valid pixels are those where a nearest-rotated image of ones is > 0.5. Returns the scalar
    sum of the KL over valid pixels / (number of valid pixels + 1e-8), over the whole batch.
    """
    if logits.shape != rot_logits.shape or logits.ndim != 4:
        raise ValueError(
            f"expected two (N, K, H, W) logits of one shape, got {tuple(logits.shape)} and "
            f"{tuple(rot_logits.shape)}"
        )
    logits = logits.float()
    n, _, height, width = logits.shape
    ones = torch.ones((n, 1, height, width), device=logits.device, dtype=logits.dtype)
    turned = rotate_images(logits, angles_deg, mode="bilinear", damp_border=True)
    kl = kl_divergence(turned, rot_logits.float(), dim=1)
    valid = rotate_images(ones, angles_deg, mode="nearest", fill=0.0)[:, 0] > 0.5
    return (kl * valid).double().sum() / (valid.sum() + 1e-8)


class SegmentationMeter:
    """Accumulates clean and rotated confusion matrices and the equivariance error over batches.

    Everything stays on the device of the first batch (counts and sums only, so memory does not
    grow with the split); ``compute()`` makes the single host transfer.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.confusion: torch.Tensor | None = None
        self.rot_confusion: torch.Tensor | None = None
        self.kl_sum: torch.Tensor | None = None
        self.kl_count: torch.Tensor | None = None
        self.reference_sum: torch.Tensor | None = None
        self.images = 0

    def _add(self, name: str, value: torch.Tensor) -> None:
        current = getattr(self, name)
        setattr(self, name, value if current is None else current + value.to(current.device))

    @torch.no_grad()
    def update(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        rot_logits: torch.Tensor | None = None,
        rot_target: torch.Tensor | None = None,
        angles_deg: torch.Tensor | Sequence[float] | float | None = None,
    ) -> None:
        """Add one batch.

        Args:
            logits: f(x), (N, K, H, W) at the label resolution.
            target: labels (N, H, W), ``ignore_index`` where void.
            rot_logits: f(Rx) on the rotated images (optional, with ``rot_target``).
            rot_target: the nearest-rotated labels with fill ``ignore_index``.
            angles_deg: the rotation of each sample (needed for the equivariance error).
        """
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"expected logits (N, {self.num_classes}, H, W), got {tuple(logits.shape)}"
            )
        self._add(
            "confusion",
            confusion_matrix(logits.argmax(1), target, self.num_classes, self.ignore_index),
        )
        if rot_logits is None:
            return
        if rot_target is None:
            raise ValueError("rot_logits given without rot_target")
        self._add(
            "rot_confusion",
            confusion_matrix(rot_logits.argmax(1), rot_target, self.num_classes, self.ignore_index),
        )
        if angles_deg is not None:
            kl, inside = pixel_equivariance_error(logits, rot_logits, angles_deg)
            self._add("kl_sum", (kl * inside).double().sum())
            self._add("kl_count", inside.sum())
            batch_error = reference_equivariance_error(logits, rot_logits, angles_deg)
            self._add("reference_sum", batch_error * len(logits))
            self.images += len(logits)

    def per_class_iou(self) -> list[float]:
        """Clean IoU per class (NaN for absent classes)."""
        if self.confusion is None:
            raise ValueError("SegmentationMeter.per_class_iou() called before any update()")
        return iou_from_confusion(self.confusion).tolist()

    def compute(self) -> dict[str, float]:
        """``miou, pixel_acc`` and, when rotated batches were given, ``rot_miou, rot_pixel_acc,
        combined``, and ``eq_error``, ``eq_error_reference`` when angles were given."""
        if self.confusion is None:
            raise ValueError("SegmentationMeter.compute() called before any update()")
        cm = self.confusion.cpu()
        out = {
            "miou": mean_iou(cm),
            "pixel_acc": float(cm.diagonal().sum() / cm.sum().clamp_min(1)),
        }
        if self.rot_confusion is not None:
            rot = self.rot_confusion.cpu()
            out["rot_miou"] = mean_iou(rot)
            out["rot_pixel_acc"] = float(rot.diagonal().sum() / rot.sum().clamp_min(1))
            out["combined"] = math.sqrt(max(out["miou"], 0.0) * max(out["rot_miou"], 0.0))
        if self.kl_sum is not None:
            out["eq_error"] = float(self.kl_sum.cpu() / self.kl_count.cpu().clamp_min(1))
            out["eq_error_reference"] = float(self.reference_sum.cpu()) / max(self.images, 1)
        return out
