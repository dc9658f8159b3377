"""Soft layers: weights projected by P_b inside every forward, through autograd.

Each soft layer is a ``torch.nn.utils.parametrize`` parametrization on an existing module's
tensor: the raw (pre-trained) tensor stays the trainable parameter
(``module.parametrizations.<name>.original``) and every access to ``module.<name>`` returns
P_b(raw).  Nothing is written back in place, the module keeps its class and its forward, and
:func:`fold` turns the model back into an ordinary one holding the projected tensors.

* :class:`SoftKernel` — conv weights (out, in / groups, k, k): every k x k slice projected.
* :class:`SoftTokenGrid` — a positional embedding (1, prefix + k * k, C): the grid tokens smoothed
  per channel, prefix (class / register) tokens untouched.
* :class:`SoftPairMap` — a linear weight (d_out, d_in) between pair features (equivariant
  projector), or a bias (d_out,) under the output action (invariant vector projector).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from softeq.projectors import EquivariantProjector, InvariantProjector

__all__ = [
    "PairGate",
    "SoftKernel",
    "SoftPairMap",
    "SoftPairVectors",
    "SoftParametrization",
    "SoftTensor",
    "fold",
    "iter_soft",
    "project_in_place",
    "soften_conv",
    "soften_linear",
    "soften_pair_vectors",
    "soften_token_grid",
]


class SoftParametrization(nn.Module):
    """Base class of softeq's parametrizations; holds one shared, immutable projector."""

    kind = "soft"

    def __init__(self, projector: InvariantProjector | EquivariantProjector) -> None:
        super().__init__()
        self.projector = projector

    def extra_repr(self) -> str:
        return self.projector.key.slug()


class SoftKernel(SoftParametrization):
    """P_b applied to every k x k kernel slice of a conv weight."""

    kind = "kernel"

    def forward(self, weight: Tensor) -> Tensor:
        return self.projector.apply(weight)


class SoftTokenGrid(SoftParametrization):
    """P_b applied per channel to the grid tokens of a (1, prefix + N, C) embedding."""

    kind = "token_grid"

    def __init__(self, projector: InvariantProjector, num_prefix_tokens: int = 0) -> None:
        super().__init__(projector)
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: Tensor) -> Tensor:
        p = self.num_prefix_tokens
        grid = self.projector.apply_tokens(tokens[..., p:, :])
        return torch.cat([tokens[..., :p, :], grid], dim=-2) if p else grid


class SoftPairMap(SoftParametrization):
    """P_b applied to a linear weight (d_out, d_in), or to a bias (d_out,) seen as (d_out, 1)."""

    kind = "pair_map"

    def forward(self, weight: Tensor) -> Tensor:
        if weight.dim() == 1:
            return self.projector.apply(weight[:, None])[:, 0]
        return self.projector.apply(weight)


class SoftPairVectors(SoftParametrization):
    """P_b applied to every pair vector (the last axis) of a tensor (..., d), e.g. a positional
    encoding (1, T, d): each row is projected like a bias, seen as (d, 1)."""

    kind = "pair_vectors"

    def forward(self, vectors: Tensor) -> Tensor:
        rows = vectors.reshape(-1, vectors.shape[-1])
        return self.projector.apply_columns(rows.T).T.reshape(vectors.shape)


def _register(module: nn.Module, name: str, parametrization: SoftParametrization) -> nn.Module:
    if parametrize.is_parametrized(module, name):
        raise ValueError(
            f"{type(module).__name__}.{name} is already parametrized (softened twice?)"
        )
    parametrize.register_parametrization(module, name, parametrization)
    return module


def soften_conv(conv: nn.Conv2d, projector: InvariantProjector) -> nn.Conv2d:
    """Make ``conv``'s weight soft: every forward uses P_b(W)."""
    if projector.key.side != "weight":
        raise ValueError("conv kernels need a weight-side invariant projector")
    return _register(conv, "weight", SoftKernel(projector))


def soften_token_grid(
    module: nn.Module, name: str, projector: InvariantProjector, num_prefix_tokens: int = 0
) -> nn.Module:
    """Make the embedding ``module.<name>`` (1, prefix + N, C) soft on its token grid."""
    tokens = getattr(module, name).shape[-2] - num_prefix_tokens
    if tokens != projector.matrix.shape[0]:
        raise ValueError(
            f"{name}: {tokens} grid tokens do not fit a {projector.grid}x{projector.grid} projector"
        )
    return _register(module, name, SoftTokenGrid(projector, num_prefix_tokens))


def soften_linear(
    linear: nn.Linear,
    projector: EquivariantProjector,
    bias_projector: EquivariantProjector | None = None,
) -> nn.Linear:
    """Make a linear map between pair features soft (weight, and bias when it has one)."""
    _register(linear, "weight", SoftPairMap(projector))
    if linear.bias is not None:
        if bias_projector is None:
            raise ValueError("this linear layer has a bias: pass a bias projector")
        _register(linear, "bias", SoftPairMap(bias_projector))
    return linear


def soften_pair_vectors(module: nn.Module, attr: str, projector: EquivariantProjector) -> nn.Module:
    """Make ``module.<attr>`` (..., d) soft as pair vectors: every forward uses P_b of each row."""
    return _register(module, attr, SoftPairVectors(projector))


def project_in_place(
    module: nn.Module, attr: str, parametrization: SoftParametrization
) -> torch.utils.hooks.RemovableHandle:
    """Overwrite ``module.<attr>`` with its projection before every forward of ``module``.

    This is the reference code's way of filtering (docs/fidelity.md): the projection is written
    into the parameter itself, so its effect compounds with the number of forward calls (the
    non-equivariant part of a shrink-filtered weight is scaled by b^N after N calls without an
    update), and the optimizer updates the projected tensor directly.  softeq's default is the
    parametrization (:func:`soften_linear`), which projects the raw weight anew at each forward.
    """
    if not isinstance(getattr(module, attr, None), nn.Parameter):
        raise ValueError(f"{type(module).__name__}.{attr} is not a parameter")

    def hook(mod: nn.Module, args: Any) -> None:
        with torch.no_grad():
            tensor = getattr(mod, attr)
            tensor.copy_(parametrization(tensor))

    return module.register_forward_pre_hook(hook)


@dataclass(frozen=True)
class SoftTensor:
    """One soft tensor of a model: ``module.<attr>`` = P_b(``raw``)."""

    name: str  # qualified name, e.g. "patch_embed.proj.weight"
    module: nn.Module
    attr: str
    parametrization: SoftParametrization

    @property
    def raw(self) -> Tensor:
        return self.module.parametrizations[self.attr].original

    @property
    def projected(self) -> Tensor:
        return getattr(self.module, self.attr)


def iter_soft(model: nn.Module) -> Iterator[SoftTensor]:
    """Every soft tensor of ``model``, in module order."""
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for attr, plist in module.parametrizations.items():
            for p in plist:
                if isinstance(p, SoftParametrization):
                    name = f"{module_name}.{attr}" if module_name else attr
                    yield SoftTensor(name, module, attr, p)


def fold(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An ordinary model holding P_b(W) in place of every soft tensor (zero inference overhead).

    Returns a copy unless ``inplace``; projectors are shared, not copied.
    """
    model = model if inplace else copy.deepcopy(model)
    modules = {id(soft.module): soft.module for soft in iter_soft(model)}
    for module in modules.values():
        plists = dict(module.parametrizations.items())
        for attr, plist in plists.items():
            foreign = [type(p).__name__ for p in plist if not isinstance(p, SoftParametrization)]
            if foreign:
                raise ValueError(f"{type(module).__name__}.{attr}: also parametrized by {foreign}")
        with torch.no_grad():
            values = {attr: getattr(module, attr).detach().clone() for attr in plists}
        trainable = {attr: plist.original.requires_grad for attr, plist in plists.items()}
        # torch's remove_parametrizations deletes the property from the parametrized class, which
        # deep copies share; restoring the base class by hand leaves other copies intact
        module.__class__ = type(module).__bases__[0]
        del module._modules["parametrizations"]
        for attr, value in values.items():
            module.register_parameter(attr, nn.Parameter(value, requires_grad=trainable[attr]))
    return model


class PairGate(nn.Module):
    """The pair-wise gated nonlinearity v -> v * sigmoid(|v| + c), one learnable c per pair
    (``shared=True``: one c for every pair, the reference's eq_nonlin).

    It only rescales each (x, y) pair by a function of its norm, so it commutes with rotations
    of every pair: the nonlinearity of the SO(2)-equivariant networks (docs/method.md §5).
    """

    def __init__(self, width: int, shared: bool = False) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"PairGate needs an even width, got {width}")
        self.bias = nn.Parameter(torch.zeros(1 if shared else width // 2))

    def forward(self, x: Tensor) -> Tensor:
        pairs = x.unflatten(-1, (-1, 2))
        gate = torch.sigmoid(pairs.norm(dim=-1, keepdim=True) + self.bias[:, None])
        return (pairs * gate).flatten(-2)
