"""soften(model, ...): walk any nn.Module and make the layers a recipe names soft.

Image groups (C_n, D_n, flip) soften every ``nn.Conv2d`` whose kernel is at least ``min_kernel``
(invariant kernel filter per slice) and, for ViT-like models (timm's ``pos_embed`` over
``patch_embed.grid_size``, or Hugging Face's ``position_embeddings`` over its stored grid, before
HF interpolates it), the positional embedding (invariant grid filter, softness ``softness_pos``;
class and register tokens excluded).  Pair features (SO2, or ``features="pairs"``)
soften every ``nn.Linear`` as an equivariant map between 2-vector features, its bias, and every
parameter a module lists in ``soft_pair_vectors`` (e.g. a positional encoding), with the invariant
filter at softness ``softness_pos`` (default ``softness``) and filter ``vector_filter`` (default
``filter``).  Tensors named by ``in_place`` (pair tensors, or an image model's positional grid)
are projected in place before every forward instead, the reference code's way
(docs/fidelity.md).  Selection is by name (``include`` / ``exclude``, fnmatch patterns); anything
selected that cannot be softened raises, and nothing is skipped silently.  Models over
representations of a matrix group (``O5``, ``SO3``, ...: a model with ``group`` and ``reps``, or
a plain MLP given ``in_rep`` / ``out_rep`` / ``hidden_rep``) go to softeq.soften_reps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
from torch import nn
from torch.nn.utils import parametrize

from softeq.filters import RPP, check_softness, resolve_filter
from softeq.groups import PairRep, pair_generators, parse_group
from softeq.layers import (
    SoftPairMap,
    SoftPairVectors,
    SoftTokenGrid,
    iter_soft,
    project_in_place,
    soften_conv,
    soften_linear,
    soften_pair_vectors,
    soften_token_grid,
)
from softeq.projectors import equivariant_projector, invariant_projector
from softeq.rpp import DEFAULT_PRIOR, rpp_conv
from softeq.soften_reps import declares_reps, soften_declared

__all__ = ["soften"]

_UNSUPPORTED_CONVS = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


_NOT_FOR_REPS = {
    k: None
    for k in ("include", "exclude", "pos_embed", "features", "operator", "cache_dir", "in_place")
} | {"vector_filter": None, "basis": None, "min_kernel": 2}
"""soften's arguments that models over representations do not take, with their defaults."""


def _not_for_reps(arguments: dict) -> dict:
    """The arguments of :data:`_NOT_FOR_REPS` set away from their defaults (None otherwise), and a
    ``softness_pos`` that differs from ``softness``."""
    others = {k: v for k, v in arguments.items() if k in _NOT_FOR_REPS and v != _NOT_FOR_REPS[k]}
    pos = arguments["softness_pos"]
    others["softness_pos"] = None if pos is None or pos == arguments["softness"] else pos
    return others


def _selected(name: str, include, exclude) -> bool:
    if include is not None and not any(fnmatch(name, pattern) for pattern in include):
        return False
    return not (exclude and any(fnmatch(name, pattern) for pattern in exclude))


def _as_patterns(value, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"{key} must be a pattern or a list of patterns, got {value!r}")
    return patterns


def _token_grid(model: nn.Module) -> tuple[str, int, int] | None:
    """(attribute, grid side, prefix tokens) of a positional embedding over a patch grid, else
    None: timm's ``pos_embed`` over ``patch_embed.grid_size``, or Hugging Face's
    ``position_embeddings`` (ViT, DINOv2) over the STORED grid of ``patch_embeddings.num_patches``
    (the config's image_size over the patch size), which HF then interpolates to the input's grid,
    so the filter acts before the interpolation."""
    pos = getattr(model, "pos_embed", None)
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if not isinstance(pos, nn.Parameter) or grid is None:
        return _hf_token_grid(model)
    if grid[0] != grid[1]:
        raise ValueError(f"pos_embed: the token grid {tuple(grid)} is not square")
    prefix = pos.shape[1] - grid[0] * grid[1]
    if getattr(model, "no_embed_class", False):
        prefix = 0
    if prefix < 0:
        raise ValueError(f"pos_embed has {pos.shape[1]} tokens, fewer than the {grid} grid")
    return "pos_embed", grid[0], prefix


def _hf_token_grid(model: nn.Module) -> tuple[str, int, int] | None:
    pos = getattr(model, "position_embeddings", None)
    patches = getattr(getattr(model, "patch_embeddings", None), "num_patches", None)
    if not isinstance(pos, nn.Parameter) or not isinstance(patches, int):
        return None
    side = math.isqrt(patches)
    if side * side != patches:
        raise ValueError(f"position_embeddings: {patches} patches are not a square grid")
    prefix = pos.shape[1] - patches
    if prefix < 0:
        raise ValueError(f"position_embeddings has {pos.shape[1]} tokens, fewer than {patches}")
    return "position_embeddings", side, prefix


def soften(
    model: nn.Module,
    group: str = "C4",
    softness: float = 0.5,
    softness_pos: float | None = None,
    filter: str = "shrink",
    hard_mask: bool = False,
    *,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    min_kernel: int = 2,
    pos_embed: bool | None = None,
    features: str | None = None,
    operator: str | None = None,
    cache_dir: str | Path | None = None,
    vector_filter: str | None = None,
    in_place: str | list[str] | None = None,
    basis: str | None = None,
    rpp_prior: float | None = None,
    in_rep=None,
    out_rep=None,
    hidden_rep=None,
) -> nn.Module:
    """Soften ``model`` in place and return it.

    Args:
        group: ``C{n}``, ``D{n}``, ``flip`` or ``SO2``.
        softness: b in [0, 1] for kernels and linear maps (0 strict, 1 the original model).
        softness_pos: b for the positional token grid (default: ``softness``).
        filter: ``shrink``, ``threshold``, ``rank`` or ``rank-hard`` (docs/method.md §2);
            ``hard_mask=True`` with ``rank`` is the same as ``rank-hard``.  ``rpp``: residual
            pathway priors on conv kernels (softeq.rpp; weight ``rpp_prior``, docs/method.md §7).
        include, exclude: fnmatch patterns on qualified module names.
        min_kernel: image groups soften convs whose kernel is at least this (default 2: k > 1).
        pos_embed: soften the positional grid (None: when the model has one).
        features: ``image`` (conv kernels) or ``pairs`` (linear maps on (x, y) pairs); default
            ``pairs`` for SO2 and ``image`` otherwise.
        operator: grid operator for C_n (``exact`` or ``bilinear``; default by group order).
        cache_dir: folder of projector files to read, and to write missing ones to.
        vector_filter: pair features: the filter of biases and pair vectors (default ``filter``).
        in_place: fnmatch patterns of soft tensor names (pair maps and vectors; the positional
            token grid of image models) projected in place before each forward of their module
            (:func:`softeq.layers.project_in_place`), not parametrized.
        basis: image models: the basis of the kernel and grid filters, ``svd`` (default, exact)
            or ``schur`` (the reference code's, with ``rank`` / ``rank-hard``; docs/fidelity.md).
        in_rep, out_rep, hidden_rep: a plain MLP's representations (Rep or text) of a matrix
            group (softeq.soften_reps; docs/method.md §9).
    """
    declared = (in_rep, out_rep, hidden_rep)
    if declares_reps(model) or any(r is not None for r in declared):
        others = _not_for_reps(locals())
        return soften_declared(
            model, group, softness, filter, hard_mask, rpp_prior, declared, others
        )
    g = parse_group(group)
    b = check_softness(softness, "softness")
    features = features or ("pairs" if g.kind == "SO2" else "image")
    rpp = _rpp_setting(filter, b, softness_pos, hard_mask, rpp_prior, features, in_place)
    filter = filter if rpp is not None else resolve_filter(filter, hard_mask)
    include, exclude = _as_patterns(include, "include"), _as_patterns(exclude, "exclude")
    _check_plain(model)
    image_only = {"pos_embed": pos_embed, "operator": operator, "basis": basis}
    _check_feature_arguments(features, g.kind, image_only, vector_filter)
    if features == "image":
        image = {**image_only, "basis": basis or "svd", "min_kernel": min_kernel, "rpp": rpp}
        count = _soften_image(
            model, g.name, b, softness_pos, filter, include, exclude, cache_dir=cache_dir, **image
        )
        _move_in_place(model, _as_patterns(in_place, "in_place") or ())
    else:
        vectors = _VectorSetting.of(b, softness_pos, filter, vector_filter)
        count = _soften_pair_model(
            model, g.name, b, filter, vectors, include, exclude, cache_dir, in_place
        )
    if count == 0:
        raise ValueError(
            f"soften: no layer of {type(model).__name__} was selected "
            f"(group={g.name}, include={include}, exclude={exclude}, min_kernel={min_kernel})"
        )
    return model


def _check_plain(model: nn.Module) -> None:
    if any(True for _ in iter_soft(model)):
        raise ValueError("model is already softened; fold it or start from the plain model")


def _rpp_setting(filter, b, softness_pos, hard_mask, prior, features, in_place) -> float | None:
    """The prior weight of a residual-pathway softening (None for the spectral filters)."""
    if filter != RPP:
        if prior is not None:
            raise ValueError(f"rpp_prior applies to filter {RPP!r}, not to {filter!r}")
        return None
    if features != "image" or in_place:
        raise ValueError(f"filter {RPP!r} softens conv kernels: no pair features, no in_place")
    if hard_mask:
        raise ValueError(f"hard_mask applies to the 'rank' filter only, not to {RPP!r}")
    if softness_pos is not None and softness_pos != b:
        raise ValueError(f"filter {RPP!r} has no positional softness (softness_pos={softness_pos})")
    prior = DEFAULT_PRIOR if prior is None else float(prior)
    if not prior >= 0:
        raise ValueError(f"rpp_prior must be >= 0, got {prior}")
    return prior


def _check_feature_arguments(features, kind, image_only, vector_filter) -> None:
    """Arguments of the other kind of features would be ignored: raise instead."""
    if features not in ("image", "pairs"):
        raise ValueError(f"features must be 'image' or 'pairs', got {features!r}")
    if features == "image":
        if kind == "SO2":
            raise ValueError("SO2 acts on pair features; image models take C<n>, D<n> or flip")
        if vector_filter is not None:
            raise ValueError("vector_filter applies to pair features only")
        return
    for key, value in image_only.items():
        if value is not None:
            raise ValueError(f"{key} applies to image models, not to pair features")


def _soften_image(
    model: nn.Module,
    group: str,
    b: float,
    softness_pos: float | None,
    filter: str,
    include: tuple[str, ...] | None,
    exclude: tuple[str, ...] | None,
    min_kernel: int,
    pos_embed: bool | None,
    operator: str | None,
    cache_dir: str | Path | None,
    basis: str = "svd",
    rpp: float | None = None,
) -> int:
    """Soften the selected convs and positional grids; ``rpp``: the residual pathway prior
    weight, with the exact projector P_0 on the convs and no grid."""
    count = 0
    for name, module in model.named_modules():
        if not _selected(name, include, exclude):
            continue
        kernel = getattr(module, "kernel_size", None)
        if isinstance(module, _UNSUPPORTED_CONVS) and kernel and max(kernel) >= min_kernel:
            raise ValueError(
                f"{name}: {type(module).__name__} is not supported; exclude it by name"
            )
        if not isinstance(module, nn.Conv2d) or min(module.kernel_size) < min_kernel:
            continue
        k_h, k_w = module.kernel_size
        if k_h != k_w:
            raise ValueError(f"{name}: kernel {k_h}x{k_w} is not square; exclude it by name")
        if rpp is not None:
            exact = invariant_projector(
                group, k_h, 0.0, "shrink", False, operator, "weight", cache_dir, basis
            )
            rpp_conv(module, exact, b, rpp)
        else:
            projector = invariant_projector(
                group, k_h, b, filter, False, operator, "weight", cache_dir, basis
            )
            soften_conv(module, projector)
        count += 1

    grids = [(name, m, _token_grid(m)) for name, m in model.named_modules() if _token_grid(m)]
    if pos_embed and not grids:
        raise ValueError(f"pos_embed=True but {type(model).__name__} has no positional token grid")
    if softness_pos is not None and not grids:
        raise ValueError(f"softness_pos given but {type(model).__name__} has no token grid")
    if rpp is not None and grids and pos_embed is not False:
        raise ValueError(
            f"filter {RPP!r} softens conv kernels; {type(model).__name__} has a positional grid "
            "(pass pos_embed=False to leave it plain)"
        )
    b_pos = b if softness_pos is None else check_softness(softness_pos, "softness_pos")
    for name, module, (attr, side, prefix) in grids:
        qualified = f"{name}.{attr}" if name else attr
        if pos_embed is False or not _selected(qualified, include, exclude):
            continue
        projector = invariant_projector(
            group, side, b_pos, filter, False, operator, "data", cache_dir, basis
        )
        soften_token_grid(module, attr, projector, prefix)
        count += 1
    return count


@dataclass(frozen=True)
class _VectorSetting:
    """Softness and filter of biases and pair vectors (the invariant filter)."""

    b: float
    filter: str

    @classmethod
    def of(cls, b: float, softness_pos, filter: str, vector_filter) -> _VectorSetting:
        return cls(
            b if softness_pos is None else check_softness(softness_pos, "softness_pos"),
            filter if vector_filter is None else resolve_filter(vector_filter),
        )


def _vector_projector(group: str, width: int, vectors: _VectorSetting, cache_dir):
    out_gens = pair_generators(group, PairRep.vectors(width))
    trivial = [np.zeros((1, 1)) for _ in out_gens]
    return equivariant_projector(
        group, trivial, out_gens, vectors.b, vectors.filter, cache_dir=cache_dir
    )


def _soften_vectors(model, group, vectors, include, exclude, cache_dir) -> int:
    """Soften the parameters modules list in ``soft_pair_vectors`` (their last axis: pairs)."""
    count = 0
    for name, module in model.named_modules():
        for attr in getattr(module, "soft_pair_vectors", ()):
            qualified = f"{name}.{attr}" if name else attr
            if not _selected(qualified, include, exclude):
                continue
            width = getattr(module, attr).shape[-1]
            if width % 2:
                raise ValueError(f"{qualified}: width {width} is not a stack of (x, y) pairs")
            projector = _vector_projector(group, width, vectors, cache_dir)
            soften_pair_vectors(module, attr, projector)
            count += 1
    return count


def _move_in_place(model: nn.Module, patterns: tuple[str, ...]) -> None:
    """Turn the soft tensors whose names match ``patterns`` into in-place projections."""
    if not patterns:
        return
    matched = [s for s in iter_soft(model) if any(fnmatch(s.name, p) for p in patterns)]
    unused = [p for p in patterns if not any(fnmatch(s.name, p) for s in matched)]
    if unused:
        raise ValueError(f"in_place patterns {unused} match no soft tensor of the model")
    for soft in matched:
        parametrization = soft.parametrization
        if not isinstance(parametrization, (SoftPairMap, SoftPairVectors, SoftTokenGrid)):
            raise ValueError(
                f"{soft.name}: only pair maps, pair vectors and positional token grids can be "
                "projected in place"
            )
        parametrize.remove_parametrizations(soft.module, soft.attr, leave_parametrized=False)
        project_in_place(soft.module, soft.attr, parametrization)


def _soften_pair_model(model, group, b, filter, vectors, include, exclude, cache_dir, in_place):
    """Soften the linear maps and pair vectors, then move the ``in_place`` ones in place."""
    count = _soften_pairs(model, group, b, filter, vectors, include, exclude, cache_dir)
    count += _soften_vectors(model, group, vectors, include, exclude, cache_dir)
    _move_in_place(model, _as_patterns(in_place, "in_place") or ())
    return count


def _soften_pairs(model, group, b, filter, vectors, include, exclude, cache_dir) -> int:
    count = 0
    for name, module in model.named_modules():
        if not _selected(name, include, exclude):
            continue
        if isinstance(module, (nn.Conv2d, *_UNSUPPORTED_CONVS)) and include is not None:
            raise ValueError(f"{name}: convolutions cannot act on pair features")
        if not isinstance(module, nn.Linear):
            continue
        if module.in_features % 2 or module.out_features % 2:
            raise ValueError(
                f"{name}: Linear({module.in_features}, {module.out_features}) does not map pair "
                "features (both widths must be even); exclude it by name"
            )
        rep_in = PairRep.vectors(module.in_features)
        rep_out = PairRep.vectors(module.out_features)
        weight = equivariant_projector(group, rep_in, rep_out, b, filter, cache_dir=cache_dir)
        bias = None
        if module.bias is not None:
            bias = _vector_projector(group, module.out_features, vectors, cache_dir)
        soften_linear(module, weight, bias)
        count += 1
    return count
