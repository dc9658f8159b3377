"""The embedded offline classification dataset: scikit-learn's digits as 32 x 32 RGB images.

The default pipeline (``config/config.yaml``) must run offline, on a CPU, in minutes, yet go
through the real code paths. scikit-learn ships 1,797 real handwritten digits (8 x 8, grey levels
0..16) inside the package, so no download is needed. Each image is scaled to [0, 1], upsampled to
28 x 28 (bilinear, ``align_corners=False``), padded with 2 zero pixels on every side to 32 x 32
and repeated to 3 channels, so it fits the image backbones (patch sizes 4, 8, 16, 32 divide 32).
The zero border matches the zero fill used when images are rotated, so a rotation adds no
artificial edge.

The split is a fixed stratified 60 / 20 / 20 train / val / test split drawn from
``numpy.random.default_rng(0)``, independent of every other seed in the project: training seeds
change the model, never the data.

Why rotation is only an approximate symmetry here: the label of a digit is not invariant under
every rotation. Small rotations (the evaluation draws angles in [-30, +30] degrees) keep the label,
but a half turn maps a 6 onto something that looks like a 9 (and vice versa), and quarter turns
turn some digits into non-digits. A strictly C4-invariant model (softness b = 0) must therefore
give a rotated 6 the same prediction as the 6 itself, which is why strict invariance can cost
accuracy and a soft setting in between can be the best trade-off, the regime the paper studies.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from softeq.io import atomic_write

__all__ = ["DIGITS_CLASSES", "SPLITS", "build_digits", "digits_tensors", "load_split"]

DIGITS_CLASSES = 10
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 32
_UPSAMPLED = 28
_SPLIT_SEED = 0
_FRACTIONS = (0.6, 0.2)  # train, val; test gets the rest of each class


def _to_rgb32(images: np.ndarray) -> torch.Tensor:
    """8 x 8 grey images with values 0..16 -> float32 (N, 3, 32, 32) in [0, 1]."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(_UPSAMPLED, _UPSAMPLED), mode="bilinear", align_corners=False)
    pad = (IMAGE_SIZE - _UPSAMPLED) // 2
    x = F.pad(x, (pad, pad, pad, pad), value=0.0)
    # bilinear upsampling is a convex combination, so values stay in [0, 1]; clamp rounding only
    return x.clamp_(0.0, 1.0).repeat(1, 3, 1, 1).contiguous()


def _stratified_split(targets: np.ndarray, seed: int = _SPLIT_SEED) -> dict[str, np.ndarray]:
    """Per class: shuffle, then cut 60 / 20 / 20. Returns sorted sample indices per split."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(targets):
        index = rng.permutation(np.flatnonzero(targets == label))
        n_train = round(_FRACTIONS[0] * len(index))
        n_val = round(_FRACTIONS[1] * len(index))
        parts["train"].append(index[:n_train])
        parts["val"].append(index[n_train : n_train + n_val])
        parts["test"].append(index[n_train + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def digits_tensors() -> dict[str, torch.Tensor]:
    """All six tensors (``{split}_x`` float32 N x 3 x 32 x 32, ``{split}_y`` int64), in memory."""
    from sklearn.datasets import load_digits  # local: only the embedded data needs scikit-learn

    digits = load_digits()
    x = _to_rgb32(digits.images)
    y = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    tensors: dict[str, torch.Tensor] = {}
    for name, index in _stratified_split(np.asarray(digits.target)).items():
        idx = torch.from_numpy(index)
        tensors[f"{name}_x"] = x[idx].contiguous()
        tensors[f"{name}_y"] = y[idx].contiguous()
    return tensors


def build_digits(out_path: str | os.PathLike[str]) -> Path:
    """Write the embedded digits dataset to a safetensors file, atomically; returns the path.

    The file holds ``train_x, train_y, val_x, val_y, test_x, test_y`` and string metadata
    (``num_classes``, ``source``, ``image_size``, split sizes, the split seed). It is written to a
    temporary file in the same directory and renamed, so a crash never leaves a partial file.
    """
    from safetensors.torch import save_file

    out = Path(out_path)
    tensors = digits_tensors()
    metadata = {
        "num_classes": str(DIGITS_CLASSES),
        "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "image_size": str(IMAGE_SIZE),
        "channels": "3",
        "preprocessing": "x/16, bilinear 8->28 (align_corners=False), zero pad 2, repeat RGB",
        "split_seed": str(_SPLIT_SEED),
        **{f"n_{name}": str(len(tensors[f"{name}_y"])) for name in SPLITS},
    }
    return atomic_write(out, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_split(path: str | os.PathLike[str], split: str) -> TensorDataset:
    """Load one split (``train``, ``val`` or ``test``) of a file written by :func:`build_digits`
    (or of the same layout: float32 images in [0, 1], or uint8 ones read as x / 255).

    Raises ValueError, naming the file, when the split is unknown or the file is missing, not a
    safetensors file, or lacks the split's tensors.
    """
    from safetensors import safe_open

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {path}; expected one of {SPLITS}")
    file = Path(path)
    if not file.is_file():
        raise ValueError(
            f"embedded dataset file {file} does not exist; build it with build_digits(path)"
        )
    keys = (f"{split}_x", f"{split}_y")
    try:
        with safe_open(str(file), framework="pt") as handle:
            available = set(handle.keys())
            loaded = {key: handle.get_tensor(key) for key in keys if key in available}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(
            f"embedded dataset file {file} is not a readable safetensors file ({err}); "
            "rebuild it with build_digits"
        ) from err
    missing = [key for key in keys if key not in loaded]
    if missing:
        raise ValueError(f"embedded dataset file {file} lacks tensors {missing}")
    x, y = loaded[keys[0]], loaded[keys[1]]
    if (
        x.ndim != 4
        or y.ndim != 1
        or len(x) != len(y)
        or x.dtype not in (torch.float32, torch.uint8)
    ):
        raise ValueError(
            f"embedded dataset file {file}: split {split!r} has x {tuple(x.shape)} {x.dtype} and "
            f"y {tuple(y.shape)}; expected float32 or uint8 (N, C, H, W) and (N,)"
        )
    if x.dtype == torch.uint8:  # 8-bit images (MNIST): [0, 255] -> [0, 1]
        x = x.float().div_(255.0)
    return TensorDataset(x, y.long())
