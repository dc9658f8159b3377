"""Soften MLPs over declared representations of a matrix group (docs/method.md §9).

A model declares its representations by two attributes: ``group`` (a
:class:`softeq.matrix_groups.MatrixGroup`) and ``reps``, the (input, output)
:class:`softeq.reps.Rep` of every ``nn.Linear`` in module order
(:class:`softeq.models.rep_mlp.RepMLP` has both).  A plain MLP (``nn.Sequential`` of Linear
layers and nonlinearities) can be given them instead
(:func:`plain_mlp_reps`).  Each Linear's weight becomes P_b(W) with the projector onto
Hom(in_rep, out_rep) and its bias P_b(c) with the projector onto Hom(Scalar, out_rep)
(:class:`softeq.projectors.reps.RepMapProjector`); ``filter="rpp"`` gives each a residual pathway
W = P_0 W_eq + W_free instead (softeq.rpp).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from softeq.filters import RPP, check_softness, resolve_filter
from softeq.layers import iter_soft, soften_linear
from softeq.matrix_groups import MatrixGroup, matrix_group
from softeq.projectors.reps import RepMapProjector
from softeq.reps import Rep, Scalar, parse_rep
from softeq.rpp import DEFAULT_PRIOR, rpp_tensor

__all__ = [
    "declares_reps",
    "plain_mlp_reps",
    "rep_linears",
    "soften_declared",
    "soften_rep_model",
]


def declares_reps(model: nn.Module) -> bool:
    """Whether ``model`` declares its representations (``group`` and ``reps`` attributes)."""
    return isinstance(getattr(model, "group", None), MatrixGroup) and isinstance(
        getattr(model, "reps", None), (list, tuple)
    )


def _rep(rep: Rep | str, group: MatrixGroup, what: str) -> Rep:
    if isinstance(rep, str):
        return parse_rep(rep, group)
    if not isinstance(rep, Rep) or rep.group.name != group.name:
        raise ValueError(
            f"{what} must be a representation of {group.name} or its text, got {rep!r}"
        )
    return rep


def plain_mlp_reps(
    model: nn.Module,
    group: MatrixGroup | str,
    in_rep: Rep | str,
    out_rep: Rep | str,
    hidden_rep: Rep | str | None = None,
) -> list[tuple[Rep, Rep]]:
    """The representations of a plain MLP's Linear layers, in module order: in -> hidden, hidden
    -> hidden, ..., hidden -> out (one Linear: in -> out).  The model's nonlinearities must be
    equivariant for ``hidden_rep`` (e.g. pointwise ones on scalars): that is the caller's claim."""
    group = matrix_group(group)
    count = sum(isinstance(m, nn.Linear) for m in model.modules())
    if count == 0:
        raise ValueError(f"{type(model).__name__} has no nn.Linear to soften")
    first, last = _rep(in_rep, group, "in_rep"), _rep(out_rep, group, "out_rep")
    if count == 1:
        if hidden_rep is not None:
            raise ValueError("hidden_rep given, but the model has a single Linear layer")
        return [(first, last)]
    if hidden_rep is None:
        raise ValueError(f"{type(model).__name__} has {count} Linear layers: pass hidden_rep")
    hidden = _rep(hidden_rep, group, "hidden_rep")
    return [(first, hidden)] + [(hidden, hidden)] * (count - 2) + [(hidden, last)]


def rep_linears(
    model: nn.Module, reps: Sequence[tuple[Rep, Rep]]
) -> list[tuple[str, nn.Linear, Rep, Rep]]:
    """(name, Linear, in_rep, out_rep) for every Linear of ``model`` in module order, checked
    against ``reps`` (one pair per Linear, dimensions matching the layer's widths)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if len(linears) != len(reps):
        raise ValueError(
            f"{type(model).__name__} has {len(linears)} Linear layers but declares "
            f"{len(reps)} representation pairs"
        )
    found = []
    for (name, linear), (rep_in, rep_out) in zip(linears, reps, strict=True):
        if (linear.in_features, linear.out_features) != (rep_in.dim, rep_out.dim):
            raise ValueError(
                f"{name}: Linear({linear.in_features}, {linear.out_features}) does not map "
                f"{rep_in.key} (dim {rep_in.dim}) to {rep_out.key} (dim {rep_out.dim})"
            )
        found.append((name, linear, rep_in, rep_out))
    return found


def soften_rep_model(
    model: nn.Module,
    softness: float,
    filter: str = "shrink",
    rpp_prior: float | None = None,
    discrete_difference: str = "angle",
    *,
    reps: Sequence[tuple[Rep, Rep]] | None = None,
) -> nn.Module:
    """Soften every Linear of a model over declared representations, in place, and return it.

    ``reps`` defaults to ``model.reps``.  Projectors are built once per distinct (in, out) pair of
    this call and shared.  ``filter``: a spectral filter (softeq.filters.FILTERS) at softness b, or
    ``rpp`` (residual pathways with the exact projector P_0, prior weight ``rpp_prior``).
    """
    if any(True for _ in iter_soft(model)):
        raise ValueError("model is already softened; fold it or start from the plain model")
    b = check_softness(softness, "softness")
    reps = model.reps if reps is None else reps
    layers = rep_linears(model, reps)
    rpp = filter == RPP
    if not rpp and rpp_prior is not None:
        raise ValueError(f"rpp_prior applies to filter {RPP!r}, not to {filter!r}")
    prior = DEFAULT_PRIOR if rpp_prior is None else float(rpp_prior)
    if not prior >= 0:
        raise ValueError(f"rpp_prior must be >= 0, got {rpp_prior}")
    spectral = "shrink" if rpp else resolve_filter(filter)
    cache: dict[tuple[str, str], RepMapProjector] = {}

    def projector(rep_in: Rep, rep_out: Rep) -> RepMapProjector:
        key = (rep_in.key, rep_out.key)
        if key not in cache:
            cache[key] = RepMapProjector(
                rep_in, rep_out, 0.0 if rpp else b, spectral, discrete_difference
            )
        return cache[key]

    for _, linear, rep_in, rep_out in layers:
        weight = projector(rep_in, rep_out)
        bias = None if linear.bias is None else projector(Scalar(rep_out.group), rep_out)
        if not rpp:
            soften_linear(linear, weight, bias)
            continue
        rpp_tensor(linear, "weight", weight, b, prior)
        if bias is not None:
            rpp_tensor(linear, "bias", bias, b, prior)
    return model


def _target_group(model: nn.Module, group: str | MatrixGroup) -> MatrixGroup:
    try:
        return matrix_group(group)
    except ValueError as error:
        if declares_reps(model):
            raise ValueError(
                f"{type(model).__name__} is a model over {model.group.name}, but soften got "
                f"group={group!r}; pass group={model.group.name!r}"
            ) from error
        raise


def soften_declared(
    model: nn.Module,
    group: str | MatrixGroup,
    softness: float,
    filter: str = "shrink",
    hard_mask: bool = False,
    rpp_prior: float | None = None,
    declared: tuple = (None, None, None),
    unsupported: Mapping[str, object] | None = None,
) -> nn.Module:
    """``softeq.soften`` for a model over representations of a matrix group.

    ``declared`` is (in_rep, out_rep, hidden_rep) for a plain MLP (all None for a model that
    declares ``group`` and ``reps``); ``unsupported`` names the other ``soften`` arguments that
    were set: any raises (they would otherwise be ignored).
    """
    given = sorted(k for k, v in (unsupported or {}).items() if v is not None)
    if given:
        raise ValueError(
            f"soften: {given} do not apply to models over representations (group, softness, "
            "filter, hard_mask, rpp_prior and in_rep / out_rep / hidden_rep do)"
        )
    target = _target_group(model, group)
    if hard_mask and filter == RPP:
        raise ValueError(f"hard_mask applies to the 'rank' filter only, not to {RPP!r}")
    filter = filter if filter == RPP else resolve_filter(filter, hard_mask)
    if declares_reps(model):
        if any(r is not None for r in declared):
            raise ValueError(
                f"{type(model).__name__} declares its representations: in_rep, out_rep and "
                "hidden_rep apply to plain MLPs only"
            )
        if model.group.name != target.name:
            raise ValueError(
                f"{type(model).__name__} is a model over {model.group.name}, but soften got "
                f"group={target.name!r}; pass group={model.group.name!r}"
            )
        return soften_rep_model(model, softness, filter, rpp_prior)
    in_rep, out_rep, hidden_rep = declared
    if in_rep is None or out_rep is None:
        raise ValueError("a plain MLP over representations needs both in_rep and out_rep")
    reps = plain_mlp_reps(model, target, in_rep, out_rep, hidden_rep)
    return soften_rep_model(model, softness, filter, rpp_prior, reps=reps)
