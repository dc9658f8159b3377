"""Projector files: safetensors (or weights-only torch files), written atomically; loading never
unpickles arbitrary objects.  A folder of them has a ``manifest.json`` that records each file's
sha256, checked before a stage uses the folder (:func:`verify_projector_dir`)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from softeq.io import atomic_write, file_sha256
from softeq.projectors.base import EquivariantProjector, InvariantProjector, Projector, ProjectorKey

__all__ = ["MANIFEST", "load_projector", "save_projector", "verify_projector_dir"]

SCHEMA_VERSION = "1"
MANIFEST = "manifest.json"
"""The file of a projector folder that lists its files and their sha256."""


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
    """Read a projector written by :func:`save_projector`; never unpickles arbitrary objects.

    Any failure to read or interpret the file (a corrupt header, a missing tensor) is a
    ``ValueError`` that names the file (an unsafe pickle stays a ``pickle.UnpicklingError``)."""
    path = Path(path)
    if path.suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"{path}: use a .safetensors or .pt file name")
    try:
        return _read_projector(path)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as error:  # a .pt file holding more than tensors
        raise pickle.UnpicklingError(f"{path}: refused to unpickle ({error})") from error
    except Exception as error:  # safetensors, torch and a malformed state raise various types
        raise ValueError(
            f"{path}: not a readable softeq projector file ({type(error).__name__}: {error})"
        ) from error


def _read_projector(path: Path) -> InvariantProjector | EquivariantProjector:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        tensors, meta = state["tensors"], state["meta"]
    if meta.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"not a softeq projector file (schema {meta.get('schema')!r})")
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


def verify_projector_dir(directory: str | Path) -> dict[str, str]:
    """Check a projector folder before use: it exists, has its ``manifest.json``, every file the
    manifest lists has the recorded sha256, and no unlisted projector file lies beside them.
    Returns ``{file name: sha256}``; every failure raises naming the folder or the file."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such projector folder (run softeq projectors)")
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path}: missing; the folder is not from softeq projectors"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{manifest_path}: not valid JSON ({error})") from error
    sums = manifest.get("sha256", {} if manifest.get("files") == [] else None)
    if not isinstance(sums, dict) or set(sums) != set(manifest.get("files", [])):
        raise ValueError(
            f"{manifest_path}: no sha256 for every listed file (written by an older softeq?); "
            "run softeq projectors again"
        )
    stray = sorted(p.name for p in directory.glob("*.safetensors") if p.name not in sums)
    if stray:
        raise ValueError(f"{directory}: projector files not in {MANIFEST}: {', '.join(stray)}")
    for name, expected in sorted(sums.items()):
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {manifest_path} but missing")
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(
                f"{path}: sha256 mismatch (expected {expected} from {MANIFEST}, got {actual}); "
                "the projector file was modified or corrupted: run softeq projectors again"
            )
    return dict(sums)
