"""Equivariance errors: the KL divergence between clean and rotated predictions.

Rotations and angle sampling live in :mod:`softeq.transforms` (docs/conventions.md §1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kl_divergence"]


def kl_divergence(
    logits_p: torch.Tensor, logits_q: torch.Tensor, dim: int = 1, *, probs_p: bool = False
) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) along ``dim``; one value per remaining index.

    For (N, K) logits this is one value per sample; for (N, K, H, W) one per pixel. Uses
    ``log_softmax`` for stability; classes with p = 0 contribute 0, and round-off below zero is
    clamped so the result is a valid (non-negative) error for log-scale plots.  With
    ``probs_p=True`` the first argument holds probabilities p itself (e.g. class probabilities
    that were rotated, zero where the rotation read outside the frame), used as given.
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"shape mismatch: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")
    if probs_p:
        p = logits_p
        log_p = torch.log(torch.where(p > 0, p, torch.ones_like(p)))
    else:
        log_p = F.log_softmax(logits_p, dim=dim)
        p = log_p.exp()
    log_q = F.log_softmax(logits_q, dim=dim)
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=dim).clamp_min(0.0)
