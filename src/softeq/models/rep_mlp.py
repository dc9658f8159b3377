"""MLPs over declared representations of a matrix group (EMLP's layout; docs/method.md §9).

A :class:`RepMLP` maps features of ``in_rep`` to ``out_rep`` through hidden features of a
representation ``hidden`` (default :func:`uniform_rep`, a sum of tensor powers of V).  Its linear
maps are plain ``nn.Linear`` modules: they become (softly) equivariant only when softened
(``softeq.soften(model, group=..., softness=...)``, which reads the model's ``group`` and ``reps``).
The nonlinearity is EMLP's gated one (:class:`GatedNonlinearity`), equivariant for any group.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from softeq.matrix_groups import MatrixGroup, matrix_group
from softeq.reps import Rep, Scalar, V, parse_rep

__all__ = [
    "ACTIVATIONS",
    "GatedNonlinearity",
    "RepMLP",
    "TensorSquare",
    "as_rep",
    "gated",
    "uniform_rep",
]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "silu": nn.functional.silu,
    "swish": nn.functional.silu,
    "tanh": torch.tanh,
    "gelu": nn.functional.gelu,
}
"""The scalar activations by name (applied to scalar features only)."""


def as_rep(rep: Rep | str, group: MatrixGroup) -> Rep:
    """``rep`` as a Rep of ``group``: text is parsed (softeq.reps.parse_rep); a Rep must be bound
    to a group of the same name."""
    if isinstance(rep, str):
        return parse_rep(rep, group)
    if not isinstance(rep, Rep):
        raise TypeError(f"expected a Rep or its text, got {type(rep).__name__}")
    if rep.group.name != group.name:
        raise ValueError(f"representation {rep.key} is of group {rep.group.name}, not {group.name}")
    return rep


def _gate_count(rep: Rep) -> int:
    return sum(mult for kind, mult in rep.blocks() if not kind.is_scalar)


def gated(rep: Rep) -> Rep:
    """``rep`` followed by one scalar gate per non-scalar copy (EMLP's ``gated``): the output
    representation of a linear map feeding :class:`GatedNonlinearity` (``rep``)."""
    gates = _gate_count(rep)
    return rep + gates * Scalar(rep.group) if gates else rep


class GatedNonlinearity(nn.Module):
    """EMLP's gated nonlinearity: input gated(rep).dim features (``rep``'s, then the gates),
    output rep.dim.

    With x = (u, s), u in ``rep`` = sum_c R_c (copies in layout order) and s one gate per
    non-scalar copy: a scalar copy u_c (R_c trivial) maps to act(u_c); a non-scalar copy maps to
    u_c * sigmoid(s_c).  The group acts on s trivially (gates are scalars), so rho(g) u_c *
    sigmoid(s_c) = rho(g) (u_c * sigmoid(s_c)) and act commutes with the trivial action: the map is
    equivariant for every group and every representation, whatever the gates' values.
    """

    def __init__(self, rep: Rep, activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}"
            )
        self.rep, self.activation = rep, activation
        self.in_dim = gated(rep).dim
        gate = torch.full((rep.dim,), -1, dtype=torch.long)
        offset, next_gate = 0, rep.dim
        for kind, mult in rep.blocks():
            for _ in range(mult):
                if not kind.is_scalar:
                    gate[offset : offset + kind.dim] = next_gate
                    next_gate += 1
                offset += kind.dim
        if offset != rep.dim or next_gate != self.in_dim:
            raise ValueError(f"{rep.key}: blocks cover {offset} of {rep.dim} features")
        self.register_buffer("gate_index", gate.clamp(min=0), persistent=False)
        self.register_buffer("scalar_mask", gate < 0, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(
                f"GatedNonlinearity({self.rep.key}) expects {self.in_dim} features "
                f"(rep {self.rep.dim} + gates), got {x.shape[-1]}"
            )
        values = x[..., : self.rep.dim]
        gates = torch.sigmoid(x[..., self.gate_index])
        return torch.where(self.scalar_mask, ACTIVATIONS[self.activation](values), values * gates)

    def extra_repr(self) -> str:
        return f"{self.rep.key}, activation={self.activation}"


class TensorSquare(nn.Module):
    """x -> (x, x_c (x) x_c' for copies c <= c'): the input and its products, copy by copy.

    With rep = sum_c R_c (copies in layout order), the output is rep followed by one block
    R_c (x) R_c' (kron layout: coordinate i * dim R_c' + j holds x_c,i x_c',j; a scalar factor
    drops out) per pair of copies c <= c'.  Equivariant for every group, since
    (rho_c(g) x_c) (x) (rho_c'(g) x_c') = (rho_c(g) (x) rho_c'(g)) (x_c (x) x_c'); the pairs
    c > c' repeat the same products transposed, so they are left out.  Keeping copies apart
    keeps the next map's representation a sum of simple types (2V gives 2V+3V**2, not
    2V+(2V)**2), which is what the projector's block structure uses.

    It gives the first linear map quadratic invariants to work with: with linear maps and gates
    alone, an O(n)-invariant model of vectors is constant (O(n) has no invariant linear functional
    on V, so every gate is a constant), while Hom(V**2, S) holds the inner product
    (docs/method.md §9).
    """

    def __init__(self, rep: Rep) -> None:
        super().__init__()
        copies, offset = [], 0
        for kind, mult in rep.blocks():
            for _ in range(mult):
                copies.append((kind, offset))
                offset += kind.dim
        terms: list[tuple[Rep, int]] = []
        index = [torch.arange(rep.dim)]
        for c, (left, start) in enumerate(copies):
            for right, other in copies[c:]:
                rows = torch.arange(start, start + left.dim)[:, None] * rep.dim
                index.append(rep.dim + (rows + torch.arange(other, other + right.dim)).flatten())
                kind = right if left.is_scalar else left if right.is_scalar else left * right
                if terms and terms[-1][0].key == kind.key:
                    terms[-1] = (terms[-1][0], terms[-1][1] + 1)
                else:
                    terms.append((kind, 1))
        self.rep, self.out_rep = rep, rep
        for kind, mult in terms:
            self.out_rep = self.out_rep + mult * kind
        self.register_buffer("index", torch.cat(index), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        square = (x[..., :, None] * x[..., None, :]).flatten(-2)
        return torch.cat([x, square], dim=-1)[..., self.index]

    def extra_repr(self) -> str:
        return f"{self.rep.key} -> {self.out_rep.key}"


def uniform_rep(group: MatrixGroup | str, width: int, max_order: int = 2) -> Rep:
    """EMLP's default hidden representation, sized so that gated(rep).dim == ``width``.

    Rule: the width is split evenly over the orders 0..K (K = ``max_order``), as EMLP's
    ``uniform_rep`` gives each tensor order about the same number of channels; order r >= 1 gets
    m_r = max(1, (width // (K + 1)) // (n^r + 1)) copies of V^{(x) r} (n^r features plus one gate
    each), and the rest of the width are scalars: width - sum_r m_r (n^r + 1) >= 0.  Raises when
    one copy of every order (with its gate) does not fit.
    """
    group = matrix_group(group)
    if max_order < 0:
        raise ValueError(f"max_order must be >= 0, got {max_order}")
    share, n = width // (max_order + 1), group.n
    mults = {r: max(1, share // (n**r + 1)) for r in range(1, max_order + 1)}
    scalars = width - sum(m * (n**r + 1) for r, m in mults.items())
    if scalars < 0 or width < 1:
        least = max(1, sum(n**r + 1 for r in range(1, max_order + 1)))
        raise ValueError(
            f"uniform_rep: width {width} is too small for tensor orders up to {max_order} of "
            f"{group.name} (n = {n}): it needs at least {least} features (gates included)"
        )
    rep = scalars * Scalar(group) if scalars else None
    for r, m in mults.items():
        term = m * (V(group) if r == 1 else V(group) ** r)
        rep = term if rep is None else rep + term
    return rep


class RepMLP(nn.Module):
    """An MLP from ``in_rep`` to ``out_rep`` with ``depth`` gated hidden layers of ``hidden``.

    Layers: Linear(in -> gated(hidden)), GatedNonlinearity(hidden), then (depth - 1) times
    Linear(hidden -> gated(hidden)), GatedNonlinearity(hidden), and Linear(hidden -> out);
    ``square_input=True`` puts :class:`TensorSquare` first (the first map then reads
    in + in**2), the quadratic input an invariant model of O(n) vectors needs.  The
    linear maps are plain (the model is an ordinary MLP until softened); ``reps`` lists the
    (input, output) representation of every ``nn.Linear`` in module order, ``group`` the group.
    """

    def __init__(
        self,
        group: MatrixGroup | str,
        in_rep: Rep | str,
        out_rep: Rep | str,
        hidden: Rep | str | int,
        depth: int,
        activation: str = "relu",
        square_input: bool = False,
    ) -> None:
        super().__init__()
        self.group = matrix_group(group)
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        in_rep, out_rep = as_rep(in_rep, self.group), as_rep(out_rep, self.group)
        if isinstance(hidden, bool) or not isinstance(hidden, (int, str, Rep)):
            raise TypeError(f"hidden must be a Rep, its text or a width, got {hidden!r}")
        hidden = uniform_rep(self.group, hidden) if isinstance(hidden, int) else hidden
        self.hidden = as_rep(hidden, self.group)
        self.in_rep, self.out_rep = in_rep, out_rep
        self.reps: list[tuple[Rep, Rep]] = []
        layers: list[nn.Module] = [TensorSquare(in_rep)] if square_input else []
        source = layers[0].out_rep if square_input else in_rep
        for _ in range(depth):
            target = gated(self.hidden)
            layers += [
                nn.Linear(source.dim, target.dim),
                GatedNonlinearity(self.hidden, activation),
            ]
            self.reps.append((source, target))
            source = self.hidden
        layers.append(nn.Linear(source.dim, out_rep.dim))
        self.reps.append((source, out_rep))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_rep.dim:
            raise ValueError(
                f"RepMLP expects {self.in_rep.dim} input features ({self.in_rep.key}), "
                f"got {x.shape[-1]}"
            )
        return self.net(x)

    def extra_repr(self) -> str:
        return f"group={self.group.name}, {self.in_rep.key} -> {self.out_rep.key}"
