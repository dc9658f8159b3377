"""Classification data from an ImageFolder tree (ImageNet as root/{train,val}/<wnid>/*.JPEG).

``build_manifest`` checks the layout once and writes a small JSON manifest that the training and
evaluation stages read; ``load_imagefolder`` gives a dataset with the usual ImageNet transforms.
A corrupt image fails with an error that names the file.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from softeq.io import read_manifest as _read_manifest
from softeq.io import write_json
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGE_SUFFIXES",
    "build_manifest",
    "is_image_file",
    "is_imagefolder_tree",
    "load_imagefolder",
    "read_manifest",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG")
SPLIT_FOLDERS = {"train": "train", "test": "val", "val": "val"}


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
    """The ``split`` (train / test) of the manifest's tree, transformed for ``input_size``.

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
    return _CheckedImageFolder(Path(manifest["root"]) / SPLIT_FOLDERS[split], transform)
