"""One entry point for classification data, whatever its source (embedded file or manifest)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

__all__ = ["load_classification", "num_classes"]


def load_classification(path: str | Path, split: str, input_size: int, train: bool) -> Dataset:
    """``split`` of the dataset at ``path``: an embedded ``.safetensors`` file or a manifest."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from softeq.data.embedded import load_split

        return load_split(path, split)
    if path.suffix == ".json":
        from softeq.data.imagefolder import load_imagefolder

        return load_imagefolder(path, split, input_size, train)
    raise ValueError(f"{path}: expected an embedded .safetensors file or a dataset manifest .json")


def num_classes(path: str | Path) -> int:
    """Number of classes of the dataset at ``path``."""
    path = Path(path)
    if path.suffix == ".json":
        from softeq.data.imagefolder import read_manifest

        return len(read_manifest(path)["classes"])
    from softeq.data.embedded import load_split

    return int(load_split(path, "train").tensors[1].max()) + 1
