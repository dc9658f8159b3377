"""Residual pathway priors (Finzi et al. 2021): W = P_0 W_eq + W_free on conv kernels, and on
the linear maps and biases of MLPs over representations (docs/method.md §9).

The baseline the paper's Figure 2 compares soft equivariance with (docs/method.md §7).  A conv
weight becomes the sum of an equivariant pathway, softeq's EXACT projector P_0 (the b = 0
invariant kernel projector of the group) applied to a free tensor W_eq, and a residual pathway
W_free.  Gaussian priors N(0, sigma_eq^2) on W_eq and N(0, sigma_free^2) on W_free enter training
as the L2 term ``prior * (||W_eq||^2 + ||W_free||^2 / b^2)``
(:meth:`ResidualPathway.auxiliary_loss`, picked up by the training loop), with
b = sigma_free / sigma_eq in [0, 1]: the prior ratio sigma_eq^2 / sigma_free^2 is 1 / b^2.
b = 1 puts the same prior on both pathways, b -> 0 is the infinitely strong prior, and b = 0
freezes W_free at zero (a buffer, not a parameter), so the layer is exactly equivariant.

The pathway is a softeq parametrization (:class:`softeq.layers.SoftParametrization`): ``W_eq`` is
the module's ``parametrizations.weight.original`` and ``W_free`` the parametrization's ``free``,
so :func:`softeq.layers.fold` bakes W in and :func:`softeq.layers.iter_soft` lists the layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from softeq.layers import SoftParametrization
from softeq.projectors import InvariantProjector

__all__ = ["DEFAULT_PRIOR", "ResidualPathway", "rpp_conv", "rpp_tensor"]

DEFAULT_PRIOR = 1e-3
"""The default prior weight lambda, beside a per-sample mean task loss (a cross-entropy of order
1): on the embedded default's small CNN (pre-trained on the digits, after its fine-tune) the prior
term is about 1.1 at b = 0.25 and 4 at b = 0.1, of which the equivariant pathway's ||W_eq||^2 is
0.5, so the sweep of b crosses from a prior of the task loss's order to a dominant one."""


class ResidualPathway(SoftParametrization):
    """W = P_0 W_eq + W_free, with the residual prior of softness ``b``: on a conv weight (an
    invariant kernel projector), or on a linear weight (d_out, d_in) or bias (d_out,) (any
    projector of maps with ``apply``, e.g. softeq.projectors.reps.RepMapProjector; a bias is
    projected as the map (d_out, 1))."""

    kind = "rpp"

    def __init__(self, projector, free: Tensor, b: float, prior: float) -> None:
        super().__init__(projector)
        if projector.key.softness != 0.0:
            raise ValueError("a residual pathway needs the exact (b = 0) projector P_0")
        if prior < 0:
            raise ValueError(f"the residual pathway prior must be >= 0, got {prior}")
        self.b, self.prior = float(b), float(prior)
        if self.b > 0:
            self.free = nn.Parameter(free.detach().clone())
        else:  # the infinite prior: W_free is zero and stays zero
            self.register_buffer("free", torch.zeros_like(free))
        self._plist: nn.Module | None = None  # set by rpp_conv (not a submodule)

    def forward(self, weight: Tensor) -> Tensor:
        if weight.dim() == 1:
            return self.projector.apply(weight[:, None])[:, 0] + self.free
        return self.projector.apply(weight) + self.free

    def extra_repr(self) -> str:
        return f"rpp b={self.b!r} prior={self.prior!r} P_0={self.projector.key.slug()}"

    @property
    def equivariant(self) -> Tensor:
        """W_eq, the tensor the equivariant pathway projects (the module's raw weight)."""
        if self._plist is None:
            raise RuntimeError("this residual pathway is not attached to a module")
        return self._plist.original

    def auxiliary_loss(self) -> Tensor | None:
        """The Gaussian priors as an L2 term: prior * (||W_eq||^2 + ||W_free||^2 / b^2)."""
        if self.prior == 0 or self._plist is None:
            return None
        term = self.equivariant.pow(2).sum()
        if self.b > 0:
            term = term + self.free.pow(2).sum() / self.b**2
        return self.prior * term


def rpp_conv(conv: nn.Conv2d, projector: InvariantProjector, b: float, prior: float) -> nn.Conv2d:
    """Give ``conv`` a residual pathway: W_eq = W and W_free = (I - P_0) W, so the layer starts
    as the original one at b > 0, and as the projected one P_0 W at b = 0 (W_free = 0)."""
    if projector.key.side != "weight":
        raise ValueError("conv kernels need a weight-side invariant projector")
    return rpp_tensor(conv, "weight", projector, b, prior)


def rpp_tensor(module: nn.Module, name: str, projector, b: float, prior: float) -> nn.Module:
    """Give ``module.<name>`` a residual pathway with the exact projector ``projector`` (P_0):
    W_eq = W and W_free = (I - P_0) W (zero at b = 0), as :func:`rpp_conv` does for kernels."""
    if parametrize.is_parametrized(module, name):
        raise ValueError(
            f"{type(module).__name__}.{name} is already parametrized (softened twice?)"
        )
    with torch.no_grad():
        weight = getattr(module, name).detach()
        column = weight[:, None] if weight.dim() == 1 else weight
        projected = projector.apply(column)
        free = weight - (projected[:, 0] if weight.dim() == 1 else projected)
    pathway = ResidualPathway(projector, free.to(weight.dtype), b, prior)
    parametrize.register_parametrization(module, name, pathway)
    # the list that holds W_eq, kept outside the module tree (deep copies follow it)
    object.__setattr__(pathway, "_plist", module.parametrizations[name])
    return module
