"""Projector objects: the key that determines a projector, and the invariant and equivariant
projectors P_b themselves (docs/method.md §1-3).

* :class:`InvariantProjector` acts on functions on a k x k grid.  Weight side (``side="weight"``):
  every k x k kernel slice w must satisfy w^T D = 0, so the constraint is C = D^T (stacked over
  generators).  Data side (``side="data"``): a grid function f (a positional embedding, per
  channel) must satisfy D f = 0, so C = D.  The two agree for permutation actions (C4, flip, D4).
* :class:`EquivariantProjector` acts on a linear map W (d_out x d_in) with the constraint
  L vec(W) = vec(W D_X - D_Y W) = 0, L = D_X^T (x) I - I (x) D_Y (column-major vec).

Projectors are immutable and shared: copies of a model share them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["EquivariantProjector", "InvariantProjector", "Projector", "ProjectorKey"]


@dataclass(frozen=True)
class ProjectorKey:
    """Everything that determines a projector; equal keys give identical projectors."""

    kind: str  # "invariant" | "equivariant"
    group: str
    shape: str  # "16x16" for grids, "<in>-><out>" for equivariant maps
    filter: str
    softness: float
    operator: str = ""  # grid operator ("exact" | "bilinear"), or method ("schur" | "dense")
    side: str = ""  # invariant projectors: "weight" | "data"
    digest: str = ""  # equivariant projectors: hash of the generator matrices
    basis: str = ""  # invariant projectors: "" (SVD, softeq's exact method) | "schur"

    def slug(self) -> str:
        """A file-name-safe identifier."""
        parts = [self.kind, self.group, self.shape.replace("->", "to"), self.filter]
        parts.append(f"b{self.softness!r}")
        parts += [p for p in (self.operator, self.side, self.digest[:10], self.basis) if p]
        return "_".join(parts)

    def to_metadata(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ProjectorKey:
        fields = cls.__dataclass_fields__
        return cls(**{k: json.loads(v) for k, v in meta.items() if k in fields})


class Projector:
    """Shared behaviour: torch operators per (device, dtype), spectral summary, sharing on copy."""

    key: ProjectorKey
    sigma: np.ndarray
    b_eff: float
    kept: int
    _arrays: dict[str, np.ndarray]

    def __init__(self) -> None:
        self._torch_cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The operator's arrays (what a projector file stores besides the spectrum)."""
        return self._arrays

    @property
    def size(self) -> int:
        """Number of singular directions (the dimension the projector acts on)."""
        return int(self.sigma.size)

    @property
    def sigma_max(self) -> float:
        return float(self.sigma[-1]) if self.sigma.size else 0.0

    def tensors(self, device: torch.device | str = "cpu", dtype=torch.float32) -> dict[str, Tensor]:
        """The operator's arrays as torch tensors on ``device``, converted once and cached."""
        cache_key = (torch.device(device), dtype)
        if cache_key not in self._torch_cache:
            self._torch_cache[cache_key] = {
                name: torch.as_tensor(array, dtype=dtype, device=device)
                for name, array in self._arrays.items()
            }
        return self._torch_cache[cache_key]

    def __deepcopy__(self, memo):  # immutable: copies of a model share their projectors
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key.slug()}, size={self.size}, b_eff={self.b_eff:g})"


class InvariantProjector(Projector):
    """P_b on functions of a k x k grid (row-major), symmetric N x N with N = k^2."""

    def __init__(
        self,
        key: ProjectorKey,
        matrix: np.ndarray,
        sigma: np.ndarray,
        constraint: np.ndarray,
        b_eff: float,
        kept: int,
    ) -> None:
        super().__init__()
        self.key, self.sigma, self.b_eff, self.kept = key, sigma, b_eff, kept
        self.constraint = constraint
        self._arrays = {"matrix": np.ascontiguousarray(matrix)}

    @property
    def matrix(self) -> np.ndarray:
        return self._arrays["matrix"]

    @property
    def grid(self) -> int:
        return math.isqrt(self.matrix.shape[0])

    def apply(self, weight: Tensor) -> Tensor:
        """Weight side: project every trailing k x k slice of ``weight`` (..., k, k)."""
        k = self.grid
        if weight.shape[-2:] != (k, k):
            raise ValueError(f"expected kernels of size {k}x{k}, got {tuple(weight.shape[-2:])}")
        p = self.tensors(weight.device, weight.dtype)["matrix"]
        return (weight.reshape(-1, k * k) @ p.T).reshape(weight.shape)

    def apply_tokens(self, tokens: Tensor) -> Tensor:
        """Data side: smooth grid functions laid out as (..., N, C), N = k^2 tokens row-major."""
        if tokens.shape[-2] != self.matrix.shape[0]:
            raise ValueError(f"expected {self.matrix.shape[0]} tokens, got {tokens.shape[-2]}")
        return self.tensors(tokens.device, tokens.dtype)["matrix"] @ tokens

    def residual(self, values: Tensor | np.ndarray) -> float:
        """||C f|| summed over all grid functions in ``values`` (kernels (..., k, k) on the weight
        side, tokens (..., N, C) on the data side)."""
        array = torch.as_tensor(values).detach().double().cpu().numpy()
        n = self.matrix.shape[0]
        if self.key.side == "weight":
            return float(np.linalg.norm(self.constraint @ array.reshape(-1, n).T))
        tokens = array.reshape(-1, n, array.shape[-1])
        return float(np.linalg.norm(np.einsum("mn,bnc->bmc", self.constraint, tokens)))


class EquivariantProjector(Projector):
    """P_b on linear maps W (d_out x d_in) between features with generators D_X (in), D_Y (out)."""

    def __init__(
        self,
        key: ProjectorKey,
        arrays: dict[str, np.ndarray],
        sigma: np.ndarray,
        in_generators: list[np.ndarray],
        out_generators: list[np.ndarray],
        b_eff: float,
        kept: int,
    ) -> None:
        super().__init__()
        self.key, self.sigma, self.b_eff, self.kept = key, sigma, b_eff, kept
        self.in_generators, self.out_generators = in_generators, out_generators
        self._arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}

    @property
    def method(self) -> str:
        return self.key.operator

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_generators[0].shape[0], self.in_generators[0].shape[0]

    def apply(self, weight: Tensor) -> Tensor:
        """P_b(W) for W of shape (d_out, d_in)."""
        if tuple(weight.shape) != self.shape:
            raise ValueError(f"expected a weight of shape {self.shape}, got {tuple(weight.shape)}")
        t = self.tensors(weight.device, weight.dtype)
        if self.method == "dense":  # column-major vec(W) = W^T flattened row-major
            flat = t["matrix"] @ weight.T.reshape(-1)
            return flat.reshape(self.shape[1], self.shape[0]).T
        rotated = t["z_out"].T @ weight @ t["z_in"]
        swapped = t["zj_out"].T @ weight @ t["zj_in"]
        return t["z_out"] @ (t["alpha"] * rotated + t["beta"] * swapped) @ t["z_in"].T

    def apply_columns(self, columns: Tensor) -> Tensor:
        """P_b of every column of ``columns`` (d_out, n), each a map (d_out, 1): vectors such as
        biases or the rows of a positional encoding, in one product."""
        if self.shape[1] != 1 or columns.ndim != 2 or columns.shape[0] != self.shape[0]:
            raise ValueError(
                f"apply_columns needs a (d, 1) projector and columns (d, n); got {self.shape} "
                f"and {tuple(columns.shape)}"
            )
        t = self.tensors(columns.device, columns.dtype)
        if self.method == "dense":  # vec of a (d, 1) map is the column itself
            return t["matrix"] @ columns
        rotated = t["z_out"].T @ columns * t["z_in"]  # z_in, zj_in: 1 x 1
        swapped = t["zj_out"].T @ columns * t["zj_in"]
        return t["z_out"] @ (t["alpha"] * rotated + t["beta"] * swapped) * t["z_in"]

    def residual(self, weight: Tensor | np.ndarray) -> float:
        """||L vec(W)|| = sqrt(sum over generators of ||W D_X - D_Y W||_F^2)."""
        w = torch.as_tensor(weight).detach().double().cpu().numpy()
        return float(
            math.sqrt(
                sum(
                    np.linalg.norm(w @ dx - dy @ w) ** 2
                    for dx, dy in zip(self.in_generators, self.out_generators, strict=True)
                )
            )
        )
