"""Classification metrics on clean and rotated inputs (docs/conventions.md §1).

top-1 and top-5 accuracy on clean inputs x and on rotated inputs Rx, ``combined = sqrt(acc *
rot_acc)`` (high only when the model is both accurate and robust to rotation), and the invariance
error ``mean KL(softmax f(x) || softmax f(Rx))``. Accuracies are fractions in [0, 1].

:meth:`ClassificationMeter.combined_batches` is the reference code's convention beside it:
``sqrt(acc_b * rot_acc_b)`` of each evaluation batch b, averaged over the batches weighted by
their sizes. It is at most ``combined`` (Cauchy-Schwarz) and depends on the evaluation batch
size; :func:`softeq.engine.classification.evaluate_classifier` reports it as
``combined_batches``.
"""

from __future__ import annotations

import math

import torch

from softeq.metrics.equivariance import kl_divergence

__all__ = ["ClassificationMeter", "topk_correct"]


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, k: int) -> int:
    """Number of samples whose target is among the ``k`` largest logits (k clamped to #classes)."""
    if logits.ndim != 2 or targets.ndim != 1 or len(logits) != len(targets):
        raise ValueError(
            f"expected logits (N, K) and targets (N,), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(logits) == 0:
        return 0
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = (top == targets.to(top.device).long().unsqueeze(1)).any(dim=1)
    return int(hits.sum().item())


class ClassificationMeter:
    """Accumulates clean logits, rotated logits and targets over batches; ``compute()`` summarises.

    Only counts and sums are kept, so memory does not grow with the split.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.count = 0
        self.correct = 0
        self.correct_topk = 0
        self.rot_correct = 0
        self.rot_correct_topk = 0
        self.kl_sum = 0.0
        self.combined_batches_sum = 0.0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, rot_logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: logits f(x), logits f(Rx) of the rotated inputs, integer targets."""
        if logits.shape != rot_logits.shape:
            raise ValueError(
                f"clean and rotated logits differ in shape: {tuple(logits.shape)} vs "
                f"{tuple(rot_logits.shape)}"
            )
        logits, rot_logits = logits.detach().float(), rot_logits.detach().float()
        n = len(targets)
        correct = topk_correct(logits, targets, 1)
        rot_correct = topk_correct(rot_logits, targets, 1)
        self.count += n
        self.correct += correct
        self.correct_topk += topk_correct(logits, targets, 5)
        self.rot_correct += rot_correct
        self.rot_correct_topk += topk_correct(rot_logits, targets, 5)
        self.kl_sum += float(kl_divergence(logits, rot_logits, dim=1).double().sum().item())
        if n:  # this batch's geometric mean, weighted by its size: sqrt(c/n * r/n) * n
            self.combined_batches_sum += math.sqrt(correct * rot_correct)

    def compute(self) -> dict[str, float]:
        """``acc, top5, rot_acc, rot_top5, combined, inv_error`` as floats (``count``: samples)."""
        if self.count == 0:
            raise ValueError("ClassificationMeter.compute() called before any update()")
        acc = self.correct / self.count
        rot_acc = self.rot_correct / self.count
        return {
            "acc": acc,
            "top5": self.correct_topk / self.count,
            "rot_acc": rot_acc,
            "rot_top5": self.rot_correct_topk / self.count,
            "combined": math.sqrt(acc * rot_acc),
            "inv_error": self.kl_sum / self.count,
        }

    def combined_batches(self) -> float:
        """The reference's combined score: sqrt(acc_b * rot_acc_b) per ``update`` batch b,
        averaged over the batches weighted by their sizes (a fraction, like ``combined``)."""
        if self.count == 0:
            raise ValueError("ClassificationMeter.combined_batches() called before any update()")
        return self.combined_batches_sum / self.count
