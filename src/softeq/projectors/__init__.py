"""Invariant and equivariant soft projectors P_b, built once per key, cached, saved and loaded
(docs/method.md §1-3)."""

from softeq.projectors.base import (
    EquivariantProjector,
    InvariantProjector,
    Projector,
    ProjectorKey,
)
from softeq.projectors.build import (
    clear_cache,
    equivariant_projector,
    invariant_projector,
    kronecker_operator,
)
from softeq.projectors.files import load_projector, save_projector

__all__ = [
    "EquivariantProjector",
    "InvariantProjector",
    "Projector",
    "ProjectorKey",
    "clear_cache",
    "equivariant_projector",
    "invariant_projector",
    "kronecker_operator",
    "load_projector",
    "save_projector",
]
