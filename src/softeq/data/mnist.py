"""MNIST for the tunability study (Figure 2): fetched, md5-checked by softeq, read by torchvision.

The four gzipped IDX files are pinned here by md5 (:data:`MNIST_MD5`, the values torchvision
0.29 lists) and fetched from the first reachable mirror (:data:`MNIST_MIRRORS`) with softeq's
checksummed, atomic :func:`softeq.data.download.download`; a local ``root`` holding them
(``<root>/*.gz`` or torchvision's ``<root>/MNIST/raw/*.gz``) is verified against the same md5s
and never written to.  They are unpacked into a scratch folder in torchvision's layout and read
with ``torchvision.datasets.MNIST(download=False)``.

Splits: the reference holds out ``val_split`` = 0.1 of the 60,000 training images at random
(data_loader/symmetry_breaking_mnist.py:37, 119-122); here the held-out tenth is drawn from
``numpy.random.default_rng(split_seed)`` (fixed: training seeds never change the data).  The
test set is MNIST's 10,000 test images.  The 6 / 9 construction
(:mod:`softeq.data.symmetry_breaking`) applies to every split, and the file holds uint8 images
(N, 1, 28, 28), read as x / 255 by :func:`softeq.data.embedded.load_split`.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from softeq.data.download import download, verify_file
from softeq.data.symmetry_breaking import BREAK_PROB, break_splits, save_splits

__all__ = [
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "VAL_FRACTION",
    "build_mnist",
    "fetch_mnist",
    "mnist_folder",
    "mnist_tensors",
]

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
VAL_FRACTION = 0.1
_SPLITS = ("train", "val", "test")


def mnist_folder(root: str | Path, md5: dict[str, str] = MNIST_MD5) -> Path:
    """The folder of a local copy (``root`` or ``root/MNIST/raw``) after checking every file's
    md5; raises naming the missing or differing file."""
    root = Path(root).expanduser()
    candidates = [root, root / "MNIST" / "raw"]
    folder = next((c for c in candidates if all((c / n).is_file() for n in md5)), None)
    if folder is None:
        missing = [n for n in md5 if not (root / n).is_file()]
        raise FileNotFoundError(
            f"{root}: no MNIST files (missing {missing}; expected <root>/*.gz or "
            "<root>/MNIST/raw/*.gz, the gzipped IDX files)"
        )
    for name, value in md5.items():
        verify_file(folder / name, md5=value)
    return folder


def fetch_mnist(
    downloads: str | Path,
    md5: dict[str, str] = MNIST_MD5,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
) -> Path:
    """The four files under ``downloads/MNIST/raw``, each fetched from the first mirror that
    answers (md5-checked before it appears); files already there with the right md5 are kept.
    ``ConnectionError`` when no mirror can be reached."""
    folder = Path(downloads) / "MNIST" / "raw"
    for name, value in md5.items():
        errors = []
        for mirror in mirrors:
            try:
                download(mirror + name, folder / name, md5=value)
                break
            except ConnectionError as error:
                errors.append(str(error))
        else:
            raise ConnectionError(f"MNIST {name}: no mirror answered:\n  " + "\n  ".join(errors))
    return folder


def _read_torchvision(folder: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels of one MNIST part, unpacked into a scratch folder in
    torchvision's layout and read by ``torchvision.datasets.MNIST``."""
    from torchvision.datasets import MNIST

    with tempfile.TemporaryDirectory(prefix="softeq-mnist-") as scratch:
        raw = Path(scratch) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in sorted(folder.glob("*-ubyte.gz")):
            with gzip.open(gz, "rb") as source, open(raw / gz.stem, "wb") as target:
                shutil.copyfileobj(source, target)
        data = MNIST(scratch, train=train, download=False)
        return data.data.clone(), data.targets.clone()


def mnist_tensors(
    folder: str | Path, val_fraction: float = VAL_FRACTION, split_seed: int = 0
) -> dict[str, torch.Tensor]:
    """``{split}_x`` uint8 (N, 1, 28, 28) and ``{split}_y`` int64 of train / val / test."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    folder = Path(folder)
    train_x, train_y = _read_torchvision(folder, train=True)
    test_x, test_y = _read_torchvision(folder, train=False)
    order = torch.from_numpy(np.random.default_rng(split_seed).permutation(len(train_y)))
    n_val = int(len(train_y) * val_fraction)
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    parts = {"train": (train_x[train], train_y[train]), "val": (train_x[val], train_y[val])}
    parts["test"] = (test_x, test_y)
    tensors = {}
    for split, (x, y) in parts.items():
        tensors[f"{split}_x"] = x.unsqueeze(1).contiguous()
        tensors[f"{split}_y"] = y.long().contiguous()
    return tensors


def build_mnist(
    folder: str | Path,
    out_path: str | Path,
    break_prob: float = BREAK_PROB,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Path:
    """The symmetry-breaking MNIST file (the layout of :func:`softeq.data.embedded.load_split`)
    from a verified folder of the four files."""
    tensors, changed = break_splits(mnist_tensors(folder, val_fraction), break_prob, seed, _SPLITS)
    metadata = {
        "num_classes": "10",
        "source": "MNIST (torchvision), 6 <-> 9 by a half turn (symmetry breaking)",
        "image_size": "28",
        "channels": "1",
        "break_prob": repr(float(break_prob)),
        "break_seed": str(seed),
        "val_fraction": repr(float(val_fraction)),
        **{f"n_{split}": str(len(tensors[f"{split}_y"])) for split in _SPLITS},
        **{f"changed_{split}": str(n) for split, n in changed.items()},
    }
    return save_splits(out_path, tensors, metadata)
