"""The embedded offline segmentation dataset: rotated scikit-learn digits on small canvases.

The default pipeline must exercise the real VOC code path offline, on a CPU, in minutes. This
module writes a dataset in VOC's own layout (JPEG images, palette PNG masks with 255 = void,
``ImageSets/Segmentation/{train,val,trainval}.txt``), so :class:`softeq.data.voc.VOCSegmentation`
reads it unchanged. Each canvas (default 64 x 64) holds a few handwritten digits from
scikit-learn's 8 x 8 digits set (shipped inside the package: no download), upsampled, rotated by a
random angle and pasted at a random position, without overlap, in a random colour on a noisy
background. Classes: 0 background, ``1 + d`` for digit d (11 classes). Around every digit a band
of ``border`` pixels is labelled 255, like VOC's object boundaries, so the ignore path is real.

The digit instances used for training and validation canvases are disjoint (a fixed split of the
1,797 digits), and everything derives from ``seed`` through a private ``numpy`` generator, so
the same call writes byte-identical files.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation

from softeq.data.voc import IGNORE_INDEX, write_mask
from softeq.io import atomic_dir

__all__ = ["EMBEDDED_VOC_CLASSES", "EmbeddedVOCSpec", "build_embedded_voc", "embedded_voc_classes"]

EMBEDDED_VOC_CLASSES = ("background", *(f"digit{d}" for d in range(10)))
_META = "embedded_voc.json"
_POOL_TRAIN_FRACTION = 0.7
_FOREGROUND = 0.35  # digit intensity above which a pixel belongs to the digit


@dataclass(frozen=True)
class EmbeddedVOCSpec:
    """Everything that determines the files written (stored in ``embedded_voc.json``)."""

    n_train: int = 160
    n_val: int = 48
    seed: int = 0
    size: int = 64
    digit_size: int = 20
    digits_per_image: tuple[int, int] = (2, 4)
    max_angle: float = 45.0
    border: int = 1
    labels: str = "digits"  # "digits": one class per digit; "foreground": digit vs background
    version: int = 1


def embedded_voc_classes(labels: str = "digits") -> tuple[str, ...]:
    """Class names of a labelling: ``digits`` (background + one per digit, 11 classes) or
    ``foreground`` (background, digit: quick to learn on a CPU)."""
    if labels == "digits":
        return EMBEDDED_VOC_CLASSES
    if labels == "foreground":
        return ("background", "digit")
    raise ValueError(f"labels must be 'digits' or 'foreground', got {labels!r}")


def _digit_pool(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Digits (N, 8, 8) in [0, 1] and labels, split into disjoint train / val pools."""
    from sklearn.datasets import load_digits  # local: only the embedded data needs scikit-learn

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32) / 16.0
    labels = np.asarray(digits.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = round(_POOL_TRAIN_FRACTION * len(labels))
    return {
        "train": (images[order[:cut]], labels[order[:cut]]),
        "val": (images[order[cut:]], labels[order[cut:]]),
    }


def _rotated_digit(digit: np.ndarray, digit_size: int, angle: float) -> np.ndarray:
    """An 8 x 8 digit upsampled to ``digit_size``, padded to its diagonal and rotated (alpha).

    PIL on float images (bilinear): per-digit torch calls pay a thread wake-up each.
    """
    image = Image.fromarray(digit.astype(np.float32), mode="F")
    image = image.resize((digit_size, digit_size), Image.Resampling.BILINEAR)
    side = math.ceil(digit_size * math.sqrt(2)) + 2
    pad = side - digit_size
    padded = np.pad(np.asarray(image), ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    rotated = Image.fromarray(padded, mode="F").rotate(angle, Image.Resampling.BILINEAR)
    return np.clip(np.asarray(rotated), 0.0, 1.0)


def _canvas(
    rng: np.random.Generator,
    pool: tuple[np.ndarray, np.ndarray],
    spec: EmbeddedVOCSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 image and its (H, W) uint8 label map."""
    size = spec.size
    images, labels = pool
    background = rng.uniform(0.0, 0.45, size=3)
    ramp = np.linspace(-1.0, 1.0, size)
    direction = rng.uniform(-0.08, 0.08, size=2)
    shade = direction[0] * ramp[None, :] + direction[1] * ramp[:, None]
    image = background[None, None, :] + shade[..., None] + rng.normal(0, 0.03, (size, size, 3))
    mask = np.zeros((size, size), dtype=np.uint8)
    occupied = np.zeros((size, size), dtype=bool)
    count = int(rng.integers(spec.digits_per_image[0], spec.digits_per_image[1] + 1))
    for _ in range(count):
        pick = int(rng.integers(len(labels)))
        angle = float(rng.uniform(-spec.max_angle, spec.max_angle))
        alpha = _rotated_digit(images[pick], spec.digit_size, angle)
        fg = alpha > _FOREGROUND
        ys, xs = np.nonzero(fg)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        b = spec.border
        alpha, fg = np.pad(alpha[box], b), np.pad(fg[box], b)
        grown = binary_dilation(fg, np.ones((2 * b + 1, 2 * b + 1), bool)) if b else fg
        h, w = grown.shape
        if h > size or w > size:
            raise ValueError(f"digit_size {spec.digit_size} does not fit a {size} canvas")
        for _attempt in range(50):
            top, left = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
            window = (slice(top, top + h), slice(left, left + w))
            if not (occupied[window] & grown).any():
                break
        else:
            continue  # no room left: fewer digits on this canvas
        colour = rng.uniform(0.55, 1.0, size=3)
        colour[int(rng.integers(3))] *= rng.uniform(0.2, 1.0)
        a = alpha[..., None]
        image[window] = image[window] * (1 - a) + colour[None, None, :] * a
        mask[window][grown & ~fg] = IGNORE_INDEX
        mask[window][fg] = 1 + int(labels[pick]) if spec.labels == "digits" else 1
        occupied[window] |= grown
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mask


def _write(root: Path, spec: EmbeddedVOCSpec) -> None:
    pools = _digit_pool(spec.seed)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    all_ids: list[str] = []
    for split, count in (("train", spec.n_train), ("val", spec.n_val)):
        split_rng = np.random.default_rng([spec.seed, 1 if split == "train" else 2])
        ids = [f"{split}_{i:05d}" for i in range(count)]
        for image_id in ids:
            image, mask = _canvas(split_rng, pools[split], spec)
            Image.fromarray(image, mode="RGB").save(
                root / "JPEGImages" / f"{image_id}.jpg", quality=95
            )
            write_mask(mask, root / "SegmentationClass" / f"{image_id}.png")
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        all_ids += ids
    (lists / "trainval.txt").write_text("".join(f"{i}\n" for i in all_ids))
    meta = {"spec": asdict(spec), "classes": list(embedded_voc_classes(spec.labels))}
    (root / _META).write_text(json.dumps(meta, indent=2) + "\n")


def build_embedded_voc(
    root: str | Path,
    n_train: int = 160,
    n_val: int = 48,
    seed: int = 0,
    size: int = 64,
    digit_size: int = 20,
    digits_per_image: tuple[int, int] = (2, 4),
    max_angle: float = 45.0,
    border: int = 1,
    labels: str = "digits",
) -> Path:
    """Write the embedded VOC-format dataset to ``root`` (atomically) and return ``root``.

    An existing ``root`` written with the same settings is reused; one written with other
    settings is an error (delete it first). ``n_train`` canvases list in ``train.txt`` (the
    paper protocol holds 10% of them out for selection), ``n_val`` in ``val.txt`` (the test split).
    """
    spec = EmbeddedVOCSpec(
        n_train=int(n_train),
        n_val=int(n_val),
        seed=int(seed),
        size=int(size),
        digit_size=int(digit_size),
        digits_per_image=(int(digits_per_image[0]), int(digits_per_image[1])),
        max_angle=float(max_angle),
        border=int(border),
        labels=str(labels),
    )
    embedded_voc_classes(spec.labels)  # checks the labelling
    if min(spec.n_train, spec.n_val) < 1 or spec.digits_per_image[0] < 1:
        raise ValueError(f"need at least one train and val canvas and one digit each: {spec}")
    root = Path(root)
    meta = root / _META
    if meta.is_file():
        written = json.loads(meta.read_text())["spec"]
        written["digits_per_image"] = tuple(written["digits_per_image"])
        if written != asdict(spec):
            raise ValueError(
                f"{root} holds an embedded VOC set built with {written}, not {asdict(spec)}; "
                "delete it or choose another folder"
            )
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not an embedded VOC set; choose another")
    with atomic_dir(root) as tmp:
        _write(tmp, spec)
    return root
