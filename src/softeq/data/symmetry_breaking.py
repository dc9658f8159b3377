"""The symmetry-breaking digits of the tunability study (Figure 2): 6 and 9 swapped by a half turn.

The reference's construction (data_loader/symmetry_breaking_mnist.py at 7f5a9e9, lines 14-24):
with probability ``break_prob`` (0.5 there) a 6 is rotated by 180 degrees and relabelled 9, and a
9 rotated by 180 degrees and relabelled 6, on the training and the test set alike.  A rotation
then changes the label, so a strictly C2- (hence C4-) invariant model must confuse the two
classes, and the best model is only approximately invariant: the regime of the figure.

The reference redraws at every ``__getitem__`` (a new draw per epoch and at every evaluation);
softeq draws once per sample from a seed (:func:`break_six_nine`), so every epoch and every
evaluation see the same data and a rerun gives the same file (docs/fidelity.md).  Rotating by
180 degrees is exact on the pixel grid (``torch.rot90`` twice), with no interpolation.

* ``digits69``: scikit-learn's digits (:mod:`softeq.data.embedded`) with this construction;
* ``mnist``: MNIST (:mod:`softeq.data.mnist`) with it, stored as uint8 (N, 1, 28, 28).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from softeq.io import atomic_write

__all__ = ["BREAK_PROB", "break_six_nine", "break_splits", "build_digits69", "save_splits"]

BREAK_PROB = 0.5
"""The reference's default ``break_prob`` (symmetry_breaking_mnist.py:39)."""
_SWAP = {6: 9, 9: 6}


def break_six_nine(x: Tensor, y: Tensor, prob: float, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rotate by 180 degrees, and swap 6 <-> 9 in the labels of, each 6 or 9 whose draw from
    ``numpy.random.default_rng(seed)`` (one uniform per sample) is below ``prob``.

    Returns the new images, the new labels and the boolean mask of the changed samples; the
    inputs are not modified."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"break_prob must lie in [0, 1], got {prob}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    draws = torch.from_numpy(np.random.default_rng(seed).random(len(y)))
    hit = ((y == 6) | (y == 9)) & (draws < prob)
    x, y = x.clone(), y.clone()
    x[hit] = torch.rot90(x[hit], 2, (-2, -1))
    y[hit] = torch.where(y[hit] == 6, _SWAP[6], _SWAP[9])
    return x, y, hit


def break_splits(
    tensors: dict[str, Tensor], prob: float, seed: int, splits: tuple[str, ...]
) -> tuple[dict[str, Tensor], dict[str, int]]:
    """The construction on every split (``{split}_x``, ``{split}_y``); split i draws from seed
    ``seed * 1000 + i``.  Returns the tensors and the count of changed samples per split."""
    out, changed = dict(tensors), {}
    for i, split in enumerate(splits):
        x, y, hit = break_six_nine(
            tensors[f"{split}_x"], tensors[f"{split}_y"], prob, seed * 1000 + i
        )
        out[f"{split}_x"], out[f"{split}_y"] = x.contiguous(), y.contiguous()
        changed[split] = int(hit.sum())
    return out, changed


def save_splits(
    out_path: str | os.PathLike[str], tensors: dict[str, Tensor], metadata: dict[str, str]
) -> Path:
    """Write split tensors and string metadata to a safetensors file, atomically."""
    from safetensors.torch import save_file

    return atomic_write(Path(out_path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def build_digits69(
    out_path: str | os.PathLike[str], break_prob: float = BREAK_PROB, seed: int = 0
) -> Path:
    """The embedded digits (same images and split as ``digits``) with the 6 / 9 construction."""
    from softeq.data.embedded import DIGITS_CLASSES, IMAGE_SIZE, SPLITS, digits_tensors

    tensors, changed = break_splits(digits_tensors(), break_prob, seed, SPLITS)
    metadata = {
        "num_classes": str(DIGITS_CLASSES),
        "source": "sklearn.datasets.load_digits, 6 <-> 9 by a half turn (symmetry breaking)",
        "image_size": str(IMAGE_SIZE),
        "channels": "3",
        "break_prob": repr(float(break_prob)),
        "break_seed": str(seed),
        **{f"n_{split}": str(len(tensors[f"{split}_y"])) for split in SPLITS},
        **{f"changed_{split}": str(n) for split, n in changed.items()},
    }
    return save_splits(out_path, tensors, metadata)
