"""Soft projectors onto (softly) equivariant linear maps between two representations of a matrix
group (docs/method.md §8).

A weight W: in_rep -> out_rep splits into blocks, one per (out copy, in copy) pair of the two
representations' direct-sum types; the constraint acts on each block alone, identically for all
copies of the same pair of types (a multiplicity is a trivial factor).  So the stacked operator C
of the whole map is block diagonal, its spectrum the union of the type pairs' spectra, and P_b is
applied per type pair in a low-rank form P = c I + U diag(w) U^T built once per pair:

* ``shrink`` (and any filter at b = 0): c = b, U the null space, w = 1 - b (exact at b = 0,
  identity at b = 1); only the null space is computed, at any size;
* ``threshold`` / ``rank`` / ``rank-hard`` / ``decay`` at 0 < b < 1: the filter's weights on the
  type pair's own full spectrum (which must fit the dense limit), c their most frequent value.

The bound: ||C vec P_b(W)||^2 = sum over blocks ||C_k P_k W_k||^2 <= (b_eff sigma_max ||W||)^2
with sigma_max the largest over type pairs and b_eff = max_k max_i f(sigma_i) sigma_i / sigma_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from softeq.filters import check_softness, filter_weights, resolve_filter
from softeq.projectors.base import ProjectorKey
from softeq.rep_spectral import DENSE_LIMIT, MapSpectrum, map_spectrum
from softeq.reps import Rep

__all__ = ["RepMapProjector"]


@dataclass
class _LowRank:
    """P = c I + U diag(w) U^T on the row-major vec of one (d_out, d_in) block."""

    identity: float
    basis: np.ndarray  # (N, r)
    weights: np.ndarray  # (r,)
    b_eff_sigma: float  # max_i f(sigma_i) sigma_i: the block's share of the bound
    sigma_max: float
    null_dim: int
    spectrum: MapSpectrum


def _needs_full_spectrum(softness: float, filter: str) -> bool:
    """``shrink`` (any b) and every filter at b = 0 or 1 need only the null space."""
    return filter != "shrink" and softness not in (0.0, 1.0)


def _low_rank(spectrum: MapSpectrum, softness: float, filter: str) -> _LowRank:
    b = softness
    if spectrum.spectrum is not None:
        result = filter_weights(spectrum.spectrum.sigma, b, filter)
        weights = result.weights
        values, counts = np.unique(weights, return_counts=True)
        identity = float(values[np.argmax(counts)])
        moved = np.flatnonzero(weights != identity)
        basis = spectrum.spectrum.columns(moved)
        b_eff_sigma = float(np.max(weights * spectrum.spectrum.sigma, initial=0.0))
        return _LowRank(
            identity, basis, weights[moved] - identity, b_eff_sigma, spectrum.sigma_max,
            spectrum.null_dim, spectrum,
        )  # fmt: skip
    null = spectrum.null_vectors()
    moved = spectrum.size > null.shape[1]  # some direction outside the null space
    if b == 1.0:
        return _LowRank(1.0, null[:, :0], np.zeros(0), spectrum.sigma_max * moved,
                        spectrum.sigma_max, null.shape[1], spectrum)  # fmt: skip
    identity = b if filter == "shrink" else 0.0
    weights = np.full(null.shape[1], 1.0 - identity)
    return _LowRank(identity, null, weights, b * spectrum.sigma_max * moved, spectrum.sigma_max,
                    null.shape[1], spectrum)  # fmt: skip


@dataclass(frozen=True)
class _Block:
    """Where one direct-sum type sits in a representation's layout."""

    start: int
    copies: int
    dim: int
    key: str

    @property
    def stop(self) -> int:
        return self.start + self.copies * self.dim


def _layout(rep: Rep) -> list[tuple[_Block, Rep]]:
    out, at = [], 0
    for rep_type, copies in rep.blocks():
        out.append((_Block(at, copies, rep_type.dim, rep_type.key), rep_type))
        at += copies * rep_type.dim
    return out


class RepMapProjector:
    """P_b on maps W (d_out, d_in) from ``in_rep`` to ``out_rep`` (module docstring).

    Duck-compatible with :class:`softeq.projectors.EquivariantProjector` where soft layers and
    :func:`softeq.bounds.report` use it: ``key``, ``size``, ``sigma_max``, ``b_eff``, ``apply``,
    ``residual``.  A bias is the map Scalar -> out_rep (shape (d_out, 1)).
    """

    def __init__(
        self,
        in_rep: Rep,
        out_rep: Rep,
        softness: float,
        filter: str = "shrink",
        discrete_difference: str = "angle",
        dense_limit: int = DENSE_LIMIT,
    ) -> None:
        if in_rep.group.name != out_rep.group.name:
            raise ValueError(f"in_rep is of {in_rep.group}, out_rep of {out_rep.group}")
        self.in_rep, self.out_rep = in_rep, out_rep
        self.softness = check_softness(softness)
        self.filter = resolve_filter(filter)
        self.in_blocks, self.out_blocks = _layout(in_rep), _layout(out_rep)
        self._ops: dict[tuple[str, str], _LowRank] = {}
        for _, out_type in self.out_blocks:
            for _, in_type in self.in_blocks:
                pair = (out_type.key, in_type.key)
                if pair not in self._ops:
                    full = _needs_full_spectrum(self.softness, self.filter)
                    spectrum = map_spectrum(
                        in_type, out_type, discrete_difference, full, dense_limit
                    )
                    self._ops[pair] = _low_rank(spectrum, self.softness, self.filter)
        self.sigma_max = max(op.sigma_max for op in self._ops.values())
        top = max(op.b_eff_sigma for op in self._ops.values())
        self.b_eff = top / self.sigma_max if self.sigma_max > 0 else 0.0
        methods = sorted({op.spectrum.method for op in self._ops.values()})
        operator = "+".join(methods) + ("" if discrete_difference == "angle" else "/unit")
        self.key = ProjectorKey(
            "equivariant", in_rep.group.name, f"{in_rep.key}->{out_rep.key}", self.filter,
            self.softness, operator=operator,
        )  # fmt: skip
        self._torch: dict[tuple, tuple[Tensor, Tensor]] = {}

    @property
    def size(self) -> int:
        return self.in_rep.dim * self.out_rep.dim

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_rep.dim, self.in_rep.dim

    @property
    def null_dim(self) -> int:
        """Dimension of the exactly equivariant maps in_rep -> out_rep."""
        return sum(
            self._ops[(o_type.key, i_type.key)].null_dim * o.copies * i.copies
            for o, o_type in self.out_blocks
            for i, i_type in self.in_blocks
        )

    def __deepcopy__(self, memo):  # immutable: copies of a model share their projectors
        return self

    def __repr__(self) -> str:
        key = self.key
        return f"RepMapProjector({key.shape} of {key.group}, {key.filter}, b={key.softness})"

    def _factors(self, pair: tuple[str, str], like: Tensor) -> tuple[Tensor, Tensor]:
        key = (pair, like.device, like.dtype)
        if key not in self._torch:
            op = self._ops[pair]
            basis = torch.as_tensor(op.basis, dtype=like.dtype, device=like.device)
            weights = torch.as_tensor(op.weights, dtype=like.dtype, device=like.device)
            self._torch[key] = (basis, weights)
        return self._torch[key]

    def _check(self, weight: Tensor) -> None:
        if tuple(weight.shape) != self.shape:
            raise ValueError(
                f"{self.key.shape}: expected a weight of shape {self.shape}, got "
                f"{tuple(weight.shape)}"
            )

    def apply(self, weight: Tensor) -> Tensor:
        """P_b(W) for W (d_out, d_in); differentiable, on W's device and dtype."""
        self._check(weight)
        rows = []
        for out, out_type in self.out_blocks:
            cols = []
            for inp, in_type in self.in_blocks:
                pair = (out_type.key, in_type.key)
                block = weight[out.start : out.stop, inp.start : inp.stop]
                vec = block.reshape(out.copies, out.dim, inp.copies, inp.dim).permute(0, 2, 1, 3)
                vec = vec.reshape(out.copies * inp.copies, out.dim * inp.dim)
                basis, weights = self._factors(pair, weight)
                projected = self._ops[pair].identity * vec
                if basis.shape[1]:
                    projected = projected + ((vec @ basis) * weights) @ basis.T
                projected = projected.reshape(out.copies, inp.copies, out.dim, inp.dim)
                cols.append(projected.permute(0, 2, 1, 3).reshape(block.shape))
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows, dim=0)

    def residual(self, weight: Tensor | np.ndarray) -> float:
        """||C vec(W)||, C stacked over every generator and every block of W."""
        w = torch.as_tensor(weight).detach().double().cpu().numpy()
        if w.ndim == 1:
            w = w[:, None]
        total = 0.0
        for out, out_type in self.out_blocks:
            for inp, in_type in self.in_blocks:
                block = w[out.start : out.stop, inp.start : inp.stop]
                vec = block.reshape(out.copies, out.dim, inp.copies, inp.dim).transpose(0, 2, 1, 3)
                vec = vec.reshape(out.copies * inp.copies, out.dim * inp.dim)
                constraint = self._ops[(out_type.key, in_type.key)].spectrum.constraint
                total += float(np.linalg.norm(constraint @ vec.T) ** 2)
        return math.sqrt(total)
