"""Projector files: safetensors (or weights-only torch files), written atomically; loading never
unpickles arbitrary objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from softeq.io import atomic_write
from softeq.projectors.base import EquivariantProjector, InvariantProjector, Projector, ProjectorKey

__all__ = ["load_projector", "save_projector"]

SCHEMA_VERSION = "1"


def _state(projector: Projector) -> tuple[dict[str, Tensor], dict[str, str]]:
    tensors = {
        f"op.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in projector.arrays.items()
    }
    tensors["sigma"] = torch.from_numpy(np.ascontiguousarray(projector.sigma))
    if isinstance(projector, InvariantProjector):
        tensors["constraint"] = torch.from_numpy(np.ascontiguousarray(projector.constraint))
    else:
        for name, gens in (("in", projector.in_generators), ("out", projector.out_generators)):
            for i, g in enumerate(gens):
                tensors[f"gen.{name}.{i}"] = torch.from_numpy(np.ascontiguousarray(g))
    meta = projector.key.to_metadata()
    meta.update(
        schema=SCHEMA_VERSION,
        b_eff=json.dumps(projector.b_eff),
        kept=json.dumps(projector.kept),
    )
    return tensors, meta


def save_projector(projector: Projector, path: str | Path) -> Path:
    """Write ``projector`` atomically: safetensors (``.safetensors``) or a torch file (``.pt``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, meta = _state(projector)
    if path.suffix == ".safetensors":
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    if path.suffix in (".pt", ".pth"):
        return atomic_write(path, lambda tmp: torch.save({"tensors": tensors, "meta": meta}, tmp))
    raise ValueError(f"{path}: use a .safetensors or .pt file name")


def load_projector(path: str | Path) -> InvariantProjector | EquivariantProjector:
    """Read a projector written by :func:`save_projector`; never unpickles arbitrary objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    elif path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        tensors, meta = state["tensors"], state["meta"]
    else:
        raise ValueError(f"{path}: use a .safetensors or .pt file name")
    if meta.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a softeq projector file (schema {meta.get('schema')!r})")
    key = ProjectorKey.from_metadata(meta)
    arrays = {k[3:]: v.numpy().copy() for k, v in tensors.items() if k.startswith("op.")}
    sigma = tensors["sigma"].numpy()
    b_eff, kept = json.loads(meta["b_eff"]), json.loads(meta["kept"])
    if key.kind == "invariant":
        return InvariantProjector(
            key, arrays["matrix"], sigma, tensors["constraint"].numpy(), b_eff, kept
        )
    gens = {
        side: [
            tensors[f"gen.{side}.{i}"].numpy()
            for i in range(sum(name.startswith(f"gen.{side}.") for name in tensors))
        ]
        for side in ("in", "out")
    }
    return EquivariantProjector(key, arrays, sigma, gens["in"], gens["out"], b_eff, kept)
