"""Equivariance bounds: per soft layer, and the paper's network-level bound (docs/method.md §6).

For a projected weight W_b = P_b(W) of the raw weight W, every filter gives
||C vec(W_b)|| <= b_eff * sigma_max * ||W||.  ``report`` measures the left side (divided by
||W||) for every soft tensor of a model and puts it beside the bound b_eff * sigma_max.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from softeq.groups import parse_group
from softeq.layers import iter_soft

__all__ = ["LayerBound", "network_bound", "report"]


@dataclass(frozen=True)
class LayerBound:
    """One soft tensor: its operator, filter, softness, and measured residual against the bound."""

    name: str
    kind: str  # kernel | token_grid | pair_map
    group: str
    operator_size: int  # dimension the projector acts on (k^2, or d_in * d_out)
    filter: str
    b: float
    b_eff: float
    sigma_max: float
    measured: float  # ||C vec(W_b)|| / ||W||, W the raw weight
    bound: float  # b_eff * sigma_max

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def report(model: nn.Module) -> list[LayerBound]:
    """One :class:`LayerBound` per soft tensor of ``model``."""
    records = []
    for soft in iter_soft(model):
        projector = soft.parametrization.projector
        raw = soft.raw.detach().double()
        projected = soft.projected.detach().double()
        if soft.parametrization.kind == "token_grid":
            prefix = soft.parametrization.num_prefix_tokens
            raw, projected = raw[..., prefix:, :], projected[..., prefix:, :]
            residual = projector.residual(projected)
        elif soft.parametrization.kind == "pair_map" and projected.dim() == 1:
            residual = projector.residual(projected[:, None])
        else:
            residual = projector.residual(projected)
        norm = float(raw.norm())
        key = projector.key
        records.append(
            LayerBound(
                name=soft.name,
                kind=soft.parametrization.kind,
                group=key.group,
                operator_size=projector.size,
                filter=key.filter,
                b=key.softness,
                b_eff=projector.b_eff,
                sigma_max=projector.sigma_max,
                measured=residual / norm if norm > 0 else 0.0,
                bound=projector.b_eff * projector.sigma_max,
            )
        )
    return records


def network_bound(softness: float, group: str, eps: float = 0.0) -> float:
    """The paper's network-level bound b * sqrt(n_G * r_G) + eps_G on the normalised error
    ||F(g x) - rho(g) F(x)|| / (||J_F(x)||_F ||x||); r_G = pi for rotation groups."""
    g = parse_group(group)
    radius = math.pi if g.has_rotation else 1.0
    return softness * math.sqrt(g.lie_dimension * radius) + eps
