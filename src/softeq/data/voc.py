"""PASCAL VOC 2012 semantic segmentation: splits, the SBD train_aug set, and augmentations.

Layout (VOC's own, also written by :mod:`softeq.data.embedded_voc` and :func:`build_train_aug`)::

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

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from softeq.metrics.equivariance import rotate_images
from softeq.settings import from_dict

__all__ = [
    "IGNORE_INDEX",
    "PROTOCOLS",
    "SBD_MD5",
    "TRAIN_AUG_SIZE",
    "VOC_CLASSES",
    "VOC_MD5",
    "VOC_TRAIN_SIZE",
    "VOC_VAL_SIZE",
    "Augment",
    "VOCSegmentation",
    "build_train_aug",
    "eval_resize",
    "heldout_ids",
    "read_ids",
    "read_mask",
    "split_ids",
    "train_augment",
    "verify_md5",
    "voc_palette",
    "write_mask",
]

VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"  # VOCtrainval_11-May-2012.tar
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"  # SBD benchmark.tgz
VOC_TRAIN_SIZE = 1464
VOC_VAL_SIZE = 1449
TRAIN_AUG_SIZE = 10582
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


def verify_md5(path: str | Path, md5: str, chunk: int = 1 << 22) -> Path:
    """Check ``path``'s MD5 against ``md5``; raise naming the file when it is missing or differs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (expected md5 {md5})")
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    if digest.hexdigest() != md5.lower():
        raise ValueError(
            f"{path}: md5 {digest.hexdigest()} does not match the expected {md5}; the download "
            "is incomplete or a different file. Delete it and download it again."
        )
    return path


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


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


def _write_ids(ids: Iterable[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{i}\n" for i in ids))
    os.replace(tmp, path)


def _lists(root: Path) -> Path:
    return root / "ImageSets" / "Segmentation"


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

    ``train_aug`` needs ``ImageSets/Segmentation/train_aug.txt`` (see :func:`build_train_aug`).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lists = _lists(Path(root))
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
    """Training augmentation (PAPER.md: scale 0.5-2, pad, crop, flip, rotation +-10 p 0.5,
    colour jitter). Factors are drawn uniformly in [1 - x, 1 + x] (hue: [-x, x])."""

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
            :func:`build_train_aug`).
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


# ----------------------------------------------------------------------------- train_aug


def _sbd_dataset_dir(sbd_root: Path) -> Path:
    for candidate in (sbd_root, sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "cls").is_dir() and (candidate / "train.txt").is_file():
            return candidate
    raise FileNotFoundError(
        f"{sbd_root}: no SBD dataset (expected cls/*.mat and train.txt, val.txt in it, in "
        "dataset/ or in benchmark_RELEASE/dataset/)"
    )


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 class indices of one SBD ``cls/<id>.mat`` (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    if "GTcls" not in mat:
        raise ValueError(f"{path}: no GTcls structure (not an SBD class annotation)")
    seg = np.asarray(mat["GTcls"].Segmentation)
    if seg.ndim != 2:
        raise ValueError(f"{path}: GTcls.Segmentation has shape {seg.shape}, expected (H, W)")
    return seg.astype(np.uint8)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    except OSError:
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


def build_train_aug(
    voc_root: str | Path,
    sbd_root: str | Path,
    out_root: str | Path,
    expected: int | None = None,
) -> list[str]:
    """Build a VOC-layout root holding train_aug; return its sorted ids.

    ids = (VOC train + SBD train + SBD val) - VOC val. ``out_root`` gets ``JPEGImages`` (a link to
    VOC's, which holds every SBD image), ``SegmentationClass`` with VOC's own mask where VOC has
    one (VOC train and val, finer boundaries) and the SBD mask (``GTcls.Segmentation`` of
    ``cls/<id>.mat``, converted to a palette PNG) elsewhere, and ``ImageSets/Segmentation`` with
    VOC's train / val / trainval lists plus ``train_aug.txt``. Existing outputs are reused.

    ``expected``: the number of ids to assert; by default 10,582 when the VOC lists are the real
    VOC 2012 ones (1,464 train, 1,449 val), no check otherwise (fixtures).
    """
    voc_root, out_root = Path(voc_root), Path(out_root)
    sbd = _sbd_dataset_dir(Path(sbd_root))
    voc_lists = _lists(voc_root)
    voc_train, voc_val = read_ids(voc_lists / "train.txt"), read_ids(voc_lists / "val.txt")
    sbd_ids = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
    ids = sorted((set(voc_train) | set(sbd_ids)) - set(voc_val))
    if expected is None and (len(voc_train), len(voc_val)) == (VOC_TRAIN_SIZE, VOC_VAL_SIZE):
        expected = TRAIN_AUG_SIZE
    if expected is not None and len(ids) != expected:
        raise ValueError(
            f"train_aug from {voc_root} and {sbd}: {len(ids)} ids, expected {expected} (are the "
            "VOC 2012 and SBD lists complete?)"
        )
    _link_or_copy(voc_root / "JPEGImages", out_root / "JPEGImages")
    masks = out_root / "SegmentationClass"
    masks.mkdir(parents=True, exist_ok=True)
    for image_id in sorted(set(ids) | set(voc_val)):
        target = masks / f"{image_id}.png"
        if target.is_file():
            continue
        voc_mask = voc_root / "SegmentationClass" / f"{image_id}.png"
        if voc_mask.is_file():
            shutil.copyfile(voc_mask, target)
            continue
        mat = sbd / "cls" / f"{image_id}.mat"
        if not mat.is_file():
            raise FileNotFoundError(f"{image_id}: neither {voc_mask} nor {mat} exists")
        write_mask(read_sbd_mask(mat), target)
    out_lists = _lists(out_root)
    for name in ("train.txt", "val.txt", "trainval.txt"):
        if (voc_lists / name).is_file():
            _write_ids(read_ids(voc_lists / name), out_lists / name)
    _write_ids(ids, out_lists / "train_aug.txt")
    return ids
