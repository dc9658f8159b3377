"""Classification data from an ImageFolder tree (ImageNet as root/{train,val}/<wnid>/*.JPEG).

``build_manifest`` checks the layout once and writes a small JSON manifest that the training and
evaluation stages read; ``load_imagefolder`` gives a dataset with the usual ImageNet transforms.
A corrupt image fails with an error that names the file.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from softeq.io import read_manifest as _read_manifest
from softeq.io import write_json
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGE_SUFFIXES",
    "build_manifest",
    "holdout_indices",
    "is_image_file",
    "is_imagefolder_tree",
    "load_imagefolder",
    "read_manifest",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG")
SPLIT_FOLDERS = {"train": "train", "test": "val", "val": "val", "fit": "train", "holdout": "train"}
"""Split -> folder.  ImageNet's val folder is its test split (and the reference's val); a softness
selection (docs/selection.md) trains on ``fit`` and scores on ``holdout``, the training folder
without and with only :data:`HOLDOUT_PER_CLASS` images per class drawn once from a fixed seed."""
HOLDOUT_PER_CLASS = 10
HOLDOUT_SEED = 0


def is_image_file(name: str | Path) -> bool:
    """Whether a file name has one of the image suffixes an ImageFolder tree holds."""
    return Path(name).suffix in IMAGE_SUFFIXES


def is_imagefolder_tree(path: Path) -> bool:
    """Whether ``path`` already holds a finished ImageFolder tree (both split folders)."""
    return (path / "train").is_dir() and (path / "val").is_dir()


def build_manifest(root: str | Path, out: str | Path) -> Path:
    """Scan ``root/train`` and ``root/val`` (one folder per class) and write the manifest."""
    root = Path(root).expanduser().resolve()
    counts, classes = {}, None
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            raise ValueError(
                f"{folder}: missing; expected an ImageFolder tree {root}/{{train,val}}/<class>/"
            )
        names = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not names:
            raise ValueError(f"{folder}: no class folders")
        if classes is not None and names != classes:
            raise ValueError(f"{folder}: class folders differ from {root / 'train'}")
        classes = names
        counts[split] = sum(
            1 for c in names for f in (folder / c).iterdir() if f.suffix in IMAGE_SUFFIXES
        )
        if counts[split] == 0:
            raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES[:3])}, ...)")
    return write_json(
        {"kind": "imagefolder", "root": str(root), "classes": classes, "counts": counts}, out
    )


def read_manifest(path: str | Path) -> dict:
    """The manifest written by :func:`build_manifest`; errors name the file."""
    return _read_manifest(path, "imagefolder")


class _CheckedImageFolder(Dataset):
    """torchvision's ImageFolder, with an error naming the file when an image cannot be read."""

    def __init__(self, folder: Path, transform) -> None:
        from torchvision.datasets import ImageFolder

        self.inner = ImageFolder(str(folder), transform=transform)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        try:
            return self.inner[index]
        except Exception as error:
            path = self.inner.samples[index][0]
            raise ValueError(f"{path}: cannot read image ({error})") from error


def load_imagefolder(
    manifest_path: str | Path,
    split: str,
    input_size: int,
    train: bool,
    auto_augment: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
):
    """The ``split`` of the manifest's tree (:data:`SPLIT_FOLDERS`), transformed for ``input_size``.

    timm's ImageNet transforms: training uses a random resized crop, flip and, if given,
    RandAugment (``auto_augment``); evaluation resizes to input_size / 0.875 and centre-crops.
    Both resize with ``interpolation`` and normalise with ``mean`` and ``std`` (the backbone's,
    docs/conventions.md §1).
    """
    from timm.data import create_transform

    manifest = read_manifest(manifest_path)
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_FOLDERS)}")
    if auto_augment and not train:
        raise ValueError("auto_augment applies to training data only")
    transform = create_transform(
        input_size,
        is_training=train,
        auto_augment=auto_augment,
        crop_pct=0.875,
        mean=mean,
        std=std,
        interpolation=interpolation,
    )
    dataset = _CheckedImageFolder(Path(manifest["root"]) / SPLIT_FOLDERS[split], transform)
    if split not in ("fit", "holdout"):
        return dataset
    held = holdout_indices(dataset.inner.targets, HOLDOUT_PER_CLASS, HOLDOUT_SEED)
    if split == "holdout":
        return Subset(dataset, held)
    kept = sorted(set(range(len(dataset))) - set(held))
    return Subset(dataset, kept)


def holdout_indices(targets: list[int], per_class: int, seed: int) -> list[int]:
    """``per_class`` sample indices of every class (all of a smaller class but one, so that it
    keeps a training image), drawn by one seeded permutation per class; sorted."""
    import torch

    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(int(target), []).append(index)
    held = []
    for label, indices in sorted(by_class.items()):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + label)
        order = torch.randperm(len(indices), generator=generator).tolist()
        held += [indices[i] for i in order[: min(per_class, len(indices) - 1)]]
    return sorted(held)
