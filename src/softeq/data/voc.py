"""PASCAL VOC 2012 semantic segmentation: splits, augmentations and the dataset.

Fetching the archives and building the SBD train_aug set: :mod:`softeq.data.voc_fetch`.

Layout (VOC's own, also written by :mod:`softeq.data.embedded_voc` and
:func:`softeq.data.voc_fetch.build_train_aug`)::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png          palette PNG: pixel value = class index, 255 = void
    root/ImageSets/Segmentation/{train,val,trainval}.txt   (train_aug.txt after build_train_aug)

Protocols (``protocol=``):

* ``"paper"`` (the paper's reference protocol): train on VOC ``train`` (1,464 images) minus a
  held-out 10% used for model selection (split ``"val"``), drawn once from a fixed seed; test on
  VOC ``val`` (1,449; split ``"test"``). No SBD.
* ``"train_aug"`` (the usual alternative): train on train_aug = VOC train + SBD train + SBD val -
  VOC val (10,582 ids) minus the same held-out ids; selection and test as above, so both
  protocols select and test on the same images.

Images are float32 RGB in [0, 1] (normalisation is the model's job, so padding and rotation fill
are black in every pipeline); masks are int64 with 255 = ignore. Training samples go through
:func:`train_augment`; evaluation samples are resized to a square ``image_size`` (bilinear image,
nearest mask), the paper's "evaluation at the training square size". Every random draw comes from
a ``torch.Generator`` seeded by (seed, epoch, index): the global RNG is never used, and a resumed
or multi-worker run sees the same samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from softeq.io import atomic_path, atomic_write_text
from softeq.settings import from_dict
from softeq.transforms import rotate_images

__all__ = [
    "IGNORE_INDEX",
    "PROTOCOLS",
    "VOC_CLASSES",
    "Augment",
    "VOCSegmentation",
    "eval_resize",
    "heldout_ids",
    "id_lists",
    "read_ids",
    "read_mask",
    "split_ids",
    "train_augment",
    "voc_palette",
    "write_ids",
    "write_mask",
]

IGNORE_INDEX = 255
PROTOCOLS = ("paper", "train_aug")
SPLITS = ("train", "val", "test")
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0  # fixed: the selection split never changes with the training seed
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


# ----------------------------------------------------------------------------------- files


def voc_palette() -> list[int]:
    """VOC's 256-colour palette as a flat [r, g, b, ...] list (index 255 is (224, 224, 192))."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def write_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W) label map (values 0..254 and 255) as a VOC palette PNG, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ValueError(f"{path}: a mask is (H, W) with values in 0..255")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def read_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 class indices of a palette (or greyscale) PNG mask."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(
                f"{path}: mask mode {image.mode!r}; expected a palette ('P') or greyscale ('L') "
                "PNG whose pixel values are class indices"
            )
        return np.array(image, dtype=np.uint8)


def read_image(path: str | Path) -> torch.Tensor:
    """(3, H, W) float32 RGB in [0, 1]."""
    with Image.open(path) as image:
        array = np.array(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def read_ids(path: str | Path) -> list[str]:
    """Ids listed one per line (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: id list not found")
    return [line.strip().split()[0] for line in path.read_text().splitlines() if line.strip()]


def write_ids(ids: Iterable[str], path: str | Path) -> Path:
    """Write ids one per line, atomically (VOC's ``ImageSets`` format)."""
    return atomic_write_text(path, "".join(f"{i}\n" for i in ids))


def id_lists(root: str | Path) -> Path:
    """The folder of a VOC-layout root's split lists (``ImageSets/Segmentation``)."""
    return Path(root) / "ImageSets" / "Segmentation"


# ----------------------------------------------------------------------------------- splits


def heldout_ids(
    train_ids: Sequence[str], fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
) -> list[str]:
    """The ``fraction`` of VOC train held out for model selection: fixed by ``seed``, sorted."""
    ids = sorted(set(train_ids))
    count = round(fraction * len(ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:count])


def split_ids(
    root: str | Path,
    split: str,
    protocol: str = "paper",
    holdout: float = HOLDOUT_FRACTION,
    holdout_seed: int = HOLDOUT_SEED,
) -> list[str]:
    """Ids of ``split`` (``train`` / ``val`` = held-out selection set / ``test`` = VOC val).

    ``train_aug`` needs ``ImageSets/Segmentation/train_aug.txt`` (see
    :func:`softeq.data.voc_fetch.build_train_aug`).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lists = id_lists(root)
    if split == "test":
        return read_ids(lists / "val.txt")
    voc_train = read_ids(lists / "train.txt")
    held = heldout_ids(voc_train, holdout, holdout_seed)
    if split == "val":
        return held
    pool = voc_train if protocol == "paper" else read_ids(lists / "train_aug.txt")
    held_set = set(held)
    return [i for i in pool if i not in held_set]


# ----------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class Augment:
    """Training augmentation (docs/paper.md, PASCAL VOC: scale 0.5-2, pad, crop, flip, rotation
    +-10 p 0.5, colour jitter). Factors are drawn uniformly in [1 - x, 1 + x] (hue: [-x, x])."""

    scale: tuple[float, float] = (0.5, 2.0)
    flip: float = 0.5
    rotate_degrees: float = 10.0
    rotate_p: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "augment") -> Augment:
        return from_dict(cls, values, where, tuples=("scale",))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _resize(image: torch.Tensor, mask: torch.Tensor, height: int, width: int):
    """Bilinear (antialiased) image and nearest mask at (height, width)."""
    image = F.interpolate(
        image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0.0, 1.0)
    mask = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest-exact")
    return image, mask[0, 0].long()


def _jitter(image: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF  # local: torchvision imports slowly

    if augment.brightness:
        factor = _uniform(generator, 1 - augment.brightness, 1 + augment.brightness)
        image = TF.adjust_brightness(image, factor)
    if augment.contrast:
        factor = _uniform(generator, 1 - augment.contrast, 1 + augment.contrast)
        image = TF.adjust_contrast(image, factor)
    if augment.saturation:
        factor = _uniform(generator, 1 - augment.saturation, 1 + augment.saturation)
        image = TF.adjust_saturation(image, factor)
    if augment.hue:
        image = TF.adjust_hue(image, _uniform(generator, -augment.hue, augment.hue))
    return image.clamp_(0.0, 1.0)


def train_augment(
    image: torch.Tensor,
    mask: torch.Tensor,
    crop_size: int,
    generator: torch.Generator,
    augment: Augment = Augment(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training sample: jitter, random scale, pad (image 0 / mask 255), random square crop,
    flip, small rotation (bilinear image with fill 0, nearest mask with fill 255).

    Colour jitter comes first so the black padding and rotation fill stay black.
    """
    image = _jitter(image, augment, generator)
    scale = _uniform(generator, *augment.scale)
    height, width = mask.shape
    image, mask = _resize(image, mask, max(1, round(height * scale)), max(1, round(width * scale)))
    pad_h, pad_w = max(crop_size - mask.shape[0], 0), max(crop_size - mask.shape[1], 0)
    if pad_h or pad_w:  # pad bottom / right, as mmseg does
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=IGNORE_INDEX)
    top = int(torch.randint(mask.shape[0] - crop_size + 1, (), generator=generator))
    left = int(torch.randint(mask.shape[1] - crop_size + 1, (), generator=generator))
    image = image[:, top : top + crop_size, left : left + crop_size]
    mask = mask[top : top + crop_size, left : left + crop_size]
    if float(torch.rand((), generator=generator)) < augment.flip:
        image, mask = image.flip(-1), mask.flip(-1)
    if augment.rotate_degrees and float(torch.rand((), generator=generator)) < augment.rotate_p:
        angle = _uniform(generator, -augment.rotate_degrees, augment.rotate_degrees)
        image = rotate_images(image[None], angle)[0].clamp_(0.0, 1.0)
        mask = rotate_images(mask[None, None], angle, mode="nearest", fill=IGNORE_INDEX)[0, 0]
    return image.contiguous(), mask.contiguous()


def eval_resize(
    image: torch.Tensor, mask: torch.Tensor, image_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation sample: image (bilinear) and mask (nearest) resized to a square ``image_size``."""
    if mask.shape == (image_size, image_size):
        return image, mask
    return _resize(image, mask, image_size, image_size)


# ------------------------------------------------------------------------------- dataset


class VOCSegmentation(Dataset):
    """A VOC-format segmentation split: ``(image (3, S, S) float [0, 1], mask (S, S) int64)``.

    Args:
        root: dataset root in VOC layout (for ``train_aug``, the output of
            :func:`softeq.data.voc_fetch.build_train_aug`).
        split: ``train``, ``val`` (held-out selection set) or ``test`` (VOC val).
        image_size: square crop (training) / evaluation size S.
        protocol: ``paper`` or ``train_aug``.
        train: apply :func:`train_augment` (default: ``split == "train"``).
        augment: augmentation settings.
        seed: base seed of the per-sample generators; :meth:`set_epoch` varies them per epoch.
        ids: use these ids instead of the protocol's (must exist under ``root``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 512,
        protocol: str = "paper",
        train: bool | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        ids: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = int(image_size)
        self.protocol = protocol
        self.ids = list(ids) if ids is not None else split_ids(self.root, split, protocol)
        if not self.ids:
            raise ValueError(f"{self.root}: split {split!r} ({protocol}) has no images")
        self.train = (split == "train") if train is None else bool(train)
        self.augment = augment or Augment()
        self.seed = int(seed)
        self.epoch = 0
        missing = [i for i in self.ids[:3] + self.ids[-3:] if not self.mask_path(i).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.root}: masks missing for ids {missing} (split {split!r}, {protocol})"
            )

    def set_epoch(self, epoch: int) -> None:
        """Vary the augmentation per epoch (call before building the epoch's DataLoader)."""
        self.epoch = int(epoch)

    def image_path(self, image_id: str) -> Path:
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def generator(self, index: int) -> torch.Generator:
        """The generator of sample ``index`` in the current epoch."""
        seed = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
        return torch.Generator().manual_seed(seed % (2**63))

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw sample (full resolution, no transform)."""
        image_id = self.ids[index]
        image = read_image(self.image_path(image_id))
        mask = torch.from_numpy(read_mask(self.mask_path(image_id)).astype(np.int64))
        if image.shape[1:] != mask.shape:
            raise ValueError(
                f"{image_id}: image {tuple(image.shape[1:])} and mask {tuple(mask.shape)} differ"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.train:
            return train_augment(image, mask, self.image_size, self.generator(index), self.augment)
        return eval_resize(image, mask, self.image_size)
