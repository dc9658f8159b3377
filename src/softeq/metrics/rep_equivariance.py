"""Equivariance errors of models on declared representations of a matrix group.

For a model f: in_rep -> out_rep and group elements g (given in the standard representation),
the per-sample error is ||f(rho_in(g) x) - rho_out(g) f(x)||_2, reported with ||f(x)||_2 so a
reader may normalise it (docs/conventions.md, "SO(3) demo").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["rep_equivariance_errors", "unit_vectors"]


def unit_vectors(rng: np.random.Generator, samples: int, vectors: int, dim: int = 3) -> np.ndarray:
    """``samples`` rows of ``vectors`` unit vectors in R^dim, uniform on the sphere, laid out as
    ``copy * dim + component`` (the layout of ``vectors * V``); shape (samples, vectors * dim)."""
    if samples < 1 or vectors < 1 or dim < 1:
        raise ValueError(f"samples, vectors and dim must be >= 1, got {samples}, {vectors}, {dim}")
    x = rng.standard_normal((samples, vectors, dim))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x.reshape(samples, vectors * dim)


def _rho_stack(rep: Any, elements: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(rep.rho(g), dtype=np.float64) for g in elements])


@torch.no_grad()
def rep_equivariance_errors(
    model: nn.Module, in_rep: Any, out_rep: Any, x: np.ndarray, elements: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample ``||f(rho_in(g_i) x_i) - rho_out(g_i) f(x_i)||`` and ``||f(x_i)||``.

    ``x`` is (N, in_rep.dim), ``elements`` (N, n, n): one group element per sample in the
    standard representation; ``in_rep`` / ``out_rep`` are ``softeq.reps.Rep`` (anything with
    ``dim`` and ``rho(g)``).  The model runs in the dtype and on the device of its parameters.
    """
    x = np.asarray(x, dtype=np.float64)
    elements = np.asarray(elements, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != in_rep.dim:
        raise ValueError(f"x must be (N, {in_rep.dim}), got {x.shape}")
    if elements.ndim != 3 or len(elements) != len(x):
        raise ValueError(f"elements must be ({len(x)}, n, n), got {elements.shape}")
    rho_in, rho_out = _rho_stack(in_rep, elements), _rho_stack(out_rep, elements)
    x_rot = np.einsum("nij,nj->ni", rho_in, x)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float64
    device = param.device if param is not None else torch.device("cpu")
    fx = model(torch.as_tensor(x, dtype=dtype, device=device)).double().cpu().numpy()
    f_rot = model(torch.as_tensor(x_rot, dtype=dtype, device=device)).double().cpu().numpy()
    if fx.shape != (len(x), out_rep.dim):
        raise ValueError(f"the model's output is {fx.shape}, expected ({len(x)}, {out_rep.dim})")
    expected = np.einsum("nij,nj->ni", rho_out, fx)
    return np.linalg.norm(f_rot - expected, axis=1), np.linalg.norm(fx, axis=1)
