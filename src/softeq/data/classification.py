"""One entry point for classification data, whatever its source (embedded file or manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

__all__ = ["load_classification", "num_classes"]


def load_classification(
    path: str | Path,
    split: str,
    input_size: int,
    train: bool,
    auto_augment: str | None = None,
    image_transform: dict[str, Any] | None = None,
) -> Dataset:
    """``split`` of the dataset at ``path``: an embedded ``.safetensors`` file or a manifest
    (an ImageFolder tree, or CIFAR's arrays: :mod:`softeq.data.cifar`).

    ``auto_augment`` (a timm RandAugment string) works on images, not on embedded tensors;
    ``image_transform`` (``mean``, ``std``, ``interpolation``) applies to images (None: ImageNet's
    statistics, bilinear); the embedded tensors are stored normalised.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if auto_augment:
            raise ValueError(
                f"{path}: auto_augment {auto_augment!r} needs image files; the embedded tensor "
                "data supports rotate_degrees instead"
            )
        from softeq.data.embedded import load_split

        return load_split(path, split)
    if path.suffix == ".json" and _manifest_kind(path) == "cifar":
        from softeq.data.cifar import load_cifar

        return load_cifar(path, split, input_size, train, auto_augment, **(image_transform or {}))
    if path.suffix == ".json":
        from softeq.data.imagefolder import load_imagefolder

        return load_imagefolder(
            path, split, input_size, train, auto_augment, **(image_transform or {})
        )
    raise ValueError(f"{path}: expected an embedded .safetensors file or a dataset manifest .json")


def _manifest_kind(path: Path) -> str | None:
    """The ``kind`` of a dataset manifest (None when unreadable: the loader then names why)."""
    import json

    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("kind") if isinstance(manifest, dict) else None


def num_classes(path: str | Path) -> int:
    """Number of classes of the dataset at ``path``."""
    path = Path(path)
    if path.suffix == ".json" and _manifest_kind(path) == "cifar":
        from softeq.io import read_manifest

        return len(read_manifest(path, "cifar")["classes"])
    if path.suffix == ".json":
        from softeq.data.imagefolder import read_manifest

        return len(read_manifest(path)["classes"])
    from softeq.data.embedded import load_split

    return int(load_split(path, "train").tensors[1].max()) + 1
